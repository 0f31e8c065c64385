/**
 * `npm run dev`: the whole system on one machine, one command.
 * Checks (and where it can, starts) Redis and Postgres, creates, migrates and seeds the dev
 * database, starts the Upstash gateway and the Neon WebSocket proxy, then `wrangler dev`
 * with cron testing on. Pointing .dev.vars at real Upstash / Neon skips the local pieces.
 * Environment: REDIS_URL (default redis://127.0.0.1:6379) and REDIS_DB (default 0) pick the
 * redis-server behind the local gateway; PORT (default 8787) the Worker's port.
 */
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { ensureDatabase, migrateDatabase } from "../db/migrate";
import { seedDatabase } from "../db/seed";
import { withoutAnsi } from "./lib/ansi";
import { loadDevVars } from "./lib/dev-vars";
import { onLauncherGone } from "./lib/launcher";
import { checkRedisDb, ensurePostgres, ensureRedis, redisDbIndex } from "./lib/services";
import { startWsProxy } from "./neon-ws-proxy/server";
import { startGateway } from "./upstash-gateway/server";

const root = fileURLToPath(new URL("..", import.meta.url));
const colors = { dev: 35, redis: 31, gateway: 36, db: 33, proxy: 34, worker: 32 } as const;
type Label = keyof typeof colors;

function logger(label: Label): (line: string) => void {
  const tty = process.stdout.isTTY;
  const tag = tty ? `\x1b[${colors[label]}m[${label}]\x1b[0m` : `[${label}]`;
  return (line) => {
    const text = tty ? line : withoutAnsi(line);
    for (const part of text.split(/\r?\n/)) if (part.trim()) console.log(`${tag} ${part}`);
  };
}

const isLocal = (url: string) =>
  ["127.0.0.1", "localhost", "[::1]"].includes(new URL(url).hostname);

/**
 * Starts a local server on `port`, turning "address already in use" into what to do about it
 * (most often an earlier `npm run dev` still running).
 */
async function listening<T>(what: string, port: number, setting: string, start: () => Promise<T>) {
  try {
    return await start();
  } catch (error) {
    const code = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code;
    if (code(error) !== "EADDRINUSE" && code((error as Error).cause) !== "EADDRINUSE") throw error;
    throw new Error(
      `port ${port} (${what}) is already in use: is another \`npm run dev\` still running? Stop it (\`ss -ltnp 'sport = :${port}'\` or \`lsof -i :${port}\` shows which process), or move ${what} to another port (${setting}).`,
    );
  }
}

/** Resolves when `port` is free on 127.0.0.1 (wrangler reports a taken one under a stack trace). */
function portFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve()));
  });
}

async function main(): Promise<void> {
  const say = logger("dev");
  // First, before anything starts or .dev.vars is written: wrangler reports a taken port only
  // after everything else is up, under a stack trace.
  const port = process.env.PORT ?? "8787";
  await listening("the Worker", Number(port), "PORT=8788 npm run dev", () =>
    portFree(Number(port)),
  );
  const vars = loadDevVars(`${root}.dev.vars`, `${root}.dev.vars.example`, say);
  const need = (name: string): string => {
    const value = vars[name];
    if (!value)
      throw new Error(`.dev.vars has no ${name}; see .dev.vars.example for what to put there.`);
    return value;
  };
  const closers: Array<() => Promise<void>> = [];

  const restUrl = need("UPSTASH_REDIS_REST_URL");
  if (isLocal(restUrl)) {
    const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
    const redisDb = redisDbIndex(process.env.REDIS_DB, "REDIS_DB", 0);
    await ensureRedis(redisUrl, logger("redis"));
    await checkRedisDb(redisUrl, redisDb, "REDIS_DB");
    const gatewayPort = Number(new URL(restUrl).port || 80);
    const gateway = await listening(
      "the local Upstash gateway",
      gatewayPort,
      "UPSTASH_REDIS_REST_URL in .dev.vars",
      () =>
        startGateway({
          port: gatewayPort,
          redisUrl,
          tokens: { [need("UPSTASH_REDIS_REST_TOKEN")]: { db: redisDb } },
          log: logger("gateway"),
        }),
    );
    closers.push(() => gateway.close());
    logger("gateway")(`Upstash REST gateway on ${gateway.url} -> ${redisUrl} db ${redisDb}`);
  } else {
    say(`using remote Redis at ${restUrl}`);
  }

  const databaseUrl = need("DATABASE_URL");
  const wsProxy = vars.NEON_WS_PROXY;
  if (isLocal(databaseUrl)) {
    const db = logger("db");
    await ensurePostgres(databaseUrl, db);
    if (await ensureDatabase(databaseUrl))
      db(`created database ${new URL(databaseUrl).pathname.slice(1)}`);
    await migrateDatabase(databaseUrl);
    db("migrations applied");
    // The seed logs its own outcome ("seed: done …" or "seed: skipped … pass --force").
    await seedDatabase(databaseUrl, { log: db });
    if (!wsProxy) {
      throw new Error(
        "DATABASE_URL is local but NEON_WS_PROXY is not set: the Worker's Neon driver needs the proxy (NEON_WS_PROXY=127.0.0.1:8433/v2).",
      );
    }
    const proxyPort = Number(wsProxy.split("/")[0]?.split(":")[1] ?? 8433);
    const proxy = await listening(
      "the Neon WebSocket proxy",
      proxyPort,
      "NEON_WS_PROXY in .dev.vars",
      () => startWsProxy({ port: proxyPort, log: logger("proxy") }),
    );
    closers.push(() => proxy.close());
    logger("proxy")(`Neon WebSocket proxy on ws://${proxy.url}`);
  } else {
    say(`using remote Postgres at ${new URL(databaseUrl).host} (Neon's own WebSocket endpoint)`);
  }

  const worker = logger("worker");
  const wrangler = spawn(
    process.execPath,
    [
      `${root}node_modules/wrangler/bin/wrangler.js`,
      "dev",
      "--test-scheduled",
      "--port",
      port,
      "--ip",
      "127.0.0.1",
      ...process.argv.slice(2),
    ],
    {
      cwd: root,
      // No Request.cf download (it needs the internet and only fills request.cf locally).
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: "false",
        CLOUDFLARE_CF_FETCH_ENABLED: process.env.CLOUDFLARE_CF_FETCH_ENABLED ?? "false",
        FORCE_COLOR: "0",
      },
      stdio: ["inherit", "pipe", "pipe"],
    },
  );
  wrangler.stdout.on("data", (chunk: Buffer) => worker(chunk.toString()));
  wrangler.stderr.on("data", (chunk: Buffer) => worker(chunk.toString()));
  say(
    `Worker starting on http://127.0.0.1:${port} — try: curl http://127.0.0.1:${port}/health ; cron: curl "http://127.0.0.1:${port}/__scheduled?cron=*/5+*+*+*+*"`,
  );

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping…");
    if (wrangler.exitCode === null) wrangler.kill("SIGINT");
    await Promise.allSettled(closers.map((close) => close()));
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  onLauncherGone(() => {
    say("npm (or whatever started this) is gone");
    void stop(0);
  });
  wrangler.on("exit", (code) => {
    say(`wrangler dev exited (${code ?? "signal"})`);
    void stop(code ?? 0);
  });
}

main().catch((err: unknown) => {
  console.error(`[dev] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
