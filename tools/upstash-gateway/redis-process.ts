/**
 * Starts a throwaway redis-server on a free port (no persistence, its own temp dir), for the
 * Global topology in tests, the CLI and benchmarks. The shared Redis on 6379 is never touched.
 *
 * @example
 * const primary = await startRedisServer();
 * console.log(primary.url); // redis://127.0.0.1:40123
 * await primary.stop();
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

export interface RedisProcess {
  url: string;
  port: number;
  /** What the server printed (its log), the last MiB of it. */
  output(): string;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;
const OUTPUT_KEEP = 1024 * 1024;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPing(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`redis-server exited with code ${child.exitCode}: ${output().trim()}`);
    }
    const probe = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on("error", () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      probe.disconnect();
    }
  }
  throw new Error(`redis-server at ${url} did not answer PING within ${READY_TIMEOUT_MS} ms`);
}

/** `bin` defaults to `redis-server` on PATH (install it with `apt-get install redis-server`). */
export async function startRedisServer(bin = "redis-server"): Promise<RedisProcess> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "gateway-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  // A replica's first full sync would otherwise wait 5 s for more replicas to join it.
  args.push("--repl-diskless-sync-delay", "0");
  const child = spawn(bin, [...args, "--dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-OUTPUT_KEEP);
  });
  child.stderr?.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-OUTPUT_KEEP);
  });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once("spawn", () => resolve());
    child.once("error", (e) =>
      reject(new Error(`Cannot start ${bin}: ${e.message}; is redis-server installed?`)),
    );
  });
  await spawned;
  const url = `redis://127.0.0.1:${port}`;
  try {
    await waitForPing(url, child, () => output);
  } catch (error) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    port,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
