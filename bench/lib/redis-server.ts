/**
 * The bench's own redis-server on a free port: results must not depend on (or disturb) the
 * shared Redis other people's tests use. No persistence; killed on close.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pingRedis } from "../../tools/lib/services";

export interface OwnRedis {
  url: string;
  port: number;
  close(): Promise<void>;
}

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

export async function startOwnRedis(): Promise<OwnRedis> {
  if (spawnSync("sh", ["-c", "command -v redis-server"], { stdio: "ignore" }).status !== 0) {
    throw new Error(
      "redis-server is not installed: the bench starts its own on a free port. Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) and run `npm run bench` again.",
    );
  }
  const port = await freePort();
  // A directory of its own (a replica's sync may write an RDB there), removed on close.
  const dir = await mkdtemp(join(tmpdir(), "bench-redis-"));
  const child: ChildProcess = spawn(
    "redis-server",
    [
      ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      // As a Global primary, sync a replica at once instead of waiting 5 s for more replicas.
      ...["--repl-diskless-sync-delay", "0", "--dir", dir],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += String(chunk);
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    if (await pingRedis(url, 200)) {
      return {
        url,
        port,
        close: async () => {
          if (child.exitCode === null) {
            const exited = new Promise((resolve) => child.once("exit", resolve));
            child.kill("SIGTERM");
            await exited;
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
  throw new Error(`redis-server on port ${port} did not start: ${stderr.trim() || "no output"}`);
}
