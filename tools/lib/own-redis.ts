/**
 * A throwaway redis-server of our own, on a free port, for whatever needs its own configuration
 * (maxmemory and eviction policy, a Global primary and replica, a bench that must not disturb
 * others): the shared Redis on 6379 is never touched. The one module that starts one: the
 * benches, the Node tests and the gateway's Global topology all use it.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pingRedis } from "./services";

/** A private redis-server child process: its configuration is ours to change. */
export interface OwnRedis {
  port: number;
  url: string;
  /** What the server printed (its log), the last MiB of it. */
  output(): string;
  /** Kills the child (SIGTERM, then SIGKILL after 2 s), waits for it to exit, removes its dir. */
  stop(): Promise<void>;
}

const ATTEMPTS = 3;
const READY_TIMEOUT_MS = 10_000;
const OUTPUT_KEEP = 1024 * 1024;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Asks the OS for a free TCP port on 127.0.0.1 (released before redis-server binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
/**
 * A crash or Ctrl-C of the parent must not leave a redis-server behind. On a signal, a process
 * that handles it itself (the gateway CLI shuts down gracefully, stopping its servers) is left
 * to do so; otherwise the children are killed and the process exits 130.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const child of running) child.kill("SIGKILL");
  };
  process.once("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (process.listenerCount(signal) > 0) return;
      killAll();
      process.exit(130);
    });
  }
}

/**
 * Spawns `redis-server --port N --save "" --appendonly no` on a free port as a child of this
 * process, in a temp dir of its own (a replica's sync may write an RDB there), with a replica's
 * first sync starting at once (`--repl-diskless-sync-delay 0`, for the Global topology). Extra
 * `args` go last on the command line, so they may override those defaults
 * (e.g. `["--maxmemory-policy", "allkeys-lru"]`).
 *
 * @example
 * const redis = await startOwnRedis();
 * try { console.log(redis.url); } finally { await redis.stop(); } // redis://127.0.0.1:40123
 */
export async function startOwnRedis(args: string[] = []): Promise<OwnRedis> {
  if (spawnSync("sh", ["-c", "command -v redis-server"], { stdio: "ignore" }).status !== 0) {
    throw new Error(
      "redis-server is not installed, and this starts a private one on a free port (the shared Redis is never touched). Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) and run again.",
    );
  }
  installExitHook();
  let lastOutput = "";
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), "own-redis-"));
    const child = spawn(
      "redis-server",
      [
        ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        ...["--repl-diskless-sync-delay", "0", "--dir", dir],
        ...args,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    running.add(child);
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-OUTPUT_KEEP);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    let exited = false;
    const exit = new Promise<void>((resolve) => {
      const done = () => {
        exited = true;
        running.delete(child);
        resolve();
      };
      child.once("exit", done);
      // A spawn failure emits "error" and no "exit".
      child.once("error", (error) => {
        output += `cannot start redis-server: ${error.message}`;
        done();
      });
    });
    const url = `redis://127.0.0.1:${port}`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!exited && Date.now() < deadline) {
      if (await pingRedis(url, 500)) {
        return {
          port,
          url,
          output: () => output,
          async stop() {
            if (!exited) {
              child.kill("SIGTERM");
              const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
              await exit;
              clearTimeout(timer);
            }
            await rm(dir, { recursive: true, force: true });
          },
        };
      }
      await sleep(50);
    }
    child.kill("SIGKILL");
    await exit;
    await rm(dir, { recursive: true, force: true });
    lastOutput = output;
    // Most likely lost the port to someone else between freePort() and bind: try another one.
  }
  throw new Error(
    `Could not start a private redis-server (${ATTEMPTS} attempts). Its last output: ${lastOutput.trim() || "none"}`,
  );
}
