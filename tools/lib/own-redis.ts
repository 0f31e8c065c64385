import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { pingRedis } from "./services";

/** A private redis-server child process: its configuration (maxmemory, policy) is ours to change. */
export interface OwnRedis {
  port: number;
  url: string;
  /** Kills the child (SIGTERM, then SIGKILL after 2 s) and waits for it to exit. */
  stop(): Promise<void>;
}

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
/** A crash or Ctrl-C of the parent must not leave a redis-server behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const child of running) child.kill("SIGKILL");
      process.exit(130);
    });
  }
}

/**
 * Spawns `redis-server --port N --save "" --appendonly no` on a free port as a child of this
 * process, never touching the shared server on 6379. Extra `args` go on the command line
 * (e.g. `["--maxmemory-policy", "allkeys-lru"]`).
 *
 * @example
 * const redis = await startOwnRedis();
 * try { console.log(redis.url); } finally { await redis.stop(); }
 */
export async function startOwnRedis(args: string[] = []): Promise<OwnRedis> {
  if (spawnSync("sh", ["-c", "command -v redis-server"], { stdio: "ignore" }).status !== 0) {
    throw new Error(
      "redis-server is not installed, and this needs a private one (its own maxmemory and eviction policy). Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) and run again.",
    );
  }
  installExitHook();
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    running.add(child);
    let exited = false;
    const exit = new Promise<void>((resolve) => {
      child.once("exit", () => {
        exited = true;
        running.delete(child);
        resolve();
      });
    });
    const url = `redis://127.0.0.1:${port}`;
    for (let i = 0; i < 50 && !exited; i++) {
      if (await pingRedis(url, 500)) {
        return {
          port,
          url,
          async stop() {
            if (exited) return;
            child.kill("SIGTERM");
            const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
            await exit;
            clearTimeout(timer);
          },
        };
      }
      await sleep(100);
    }
    child.kill("SIGKILL");
    await exit;
    // Lost the port to someone else between freePort() and bind: try another one.
  }
  throw new Error("Could not start a private redis-server (3 attempts). Is redis-server working?");
}
