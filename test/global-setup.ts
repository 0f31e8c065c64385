import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Redis as IORedis } from "ioredis";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { ensureDatabase, migrateDatabase } from "../db/migrate";
import { seedDatabase } from "../db/seed";
import { checkRedisDb, ensurePostgres, ensureRedis, redisDbIndex } from "../tools/lib/services";
import { DEFAULT_ALLOWED_TARGETS, startWsProxy } from "../tools/neon-ws-proxy/server";
import { startGateway } from "../tools/upstash-gateway/server";
import type { TestStack } from "./stack";

/**
 * Starts what the tests need and nothing by hand: Redis and Postgres (started if they are
 * local and stopped), a fresh migrated test database (never the dev one), the Upstash gateway
 * on a free port with its own Redis DB index, and the Neon WebSocket proxy.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const REDIS_DB = redisDbIndex(process.env.TEST_REDIS_DB, "TEST_REDIS_DB", 1);
const DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/edgecache_test";

/** Each round trip to the slow Postgres (stack.slowPostgresUrl) takes this much longer. */
const SLOW_POSTGRES_DELAY_MS = 1_500;

const log = (line: string) => console.log(`[test-stack] ${line}`);

async function recreateDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = url.pathname.slice(1);
  if (name === "edgecache") throw new Error("Refusing to use the dev database for tests.");
  url.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    await admin.query(
      "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
      [name],
    );
    await admin.query(`drop database if exists "${name.replaceAll('"', '""')}"`);
  } finally {
    await admin.end();
  }
  await ensureDatabase(databaseUrl);
}

/** `server` listening on a free local port; `close()` ends its open `sockets` too. */
async function listening(
  server: Server,
  sockets: Set<Socket>,
): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A Postgres that hangs: accepts TCP connections and never answers a byte. The sockets are
 * kept so close() can end them (the Worker's side is gone by then anyway).
 */
async function startHungListener(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  return listening(server, sockets);
}

/**
 * A slow Postgres: a TCP forwarder to the real one that holds every byte Postgres sends for
 * `delayMs` (in order), so each round trip (the connect, each query) takes that much longer.
 * A loaded database, a compute waking up or a far region, with the real server's answers.
 */
async function startSlowForwarder(
  target: { host: string; port: number },
  delayMs: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on("close", () => sockets.delete(socket));
    }
    client.pipe(upstream);
    // Timers of one delay fire in the order they were set: the stream stays in order.
    upstream.on("data", (chunk) => {
      setTimeout(() => {
        if (!client.destroyed) client.write(chunk);
      }, delayMs);
    });
    upstream.on("end", () => setTimeout(() => client.end(), delayMs));
    client.on("close", () => upstream.destroy());
  });
  return listening(server, sockets);
}

/** A port where nothing listens (Postgres stopped): bound, read, released. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `url` with its host and port replaced by 127.0.0.1:`port`. */
function onPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString();
}

interface RunningStack {
  stack: TestStack;
  users: number;
  stop(): Promise<void>;
}

// Each vitest project runs its own global setup; the stack lives on globalThis so both
// projects share one gateway, one proxy and one database instead of dropping each other's.
const shared = globalThis as typeof globalThis & { __edgecacheStack?: Promise<RunningStack> };

async function startStack(): Promise<RunningStack> {
  const started = Date.now();
  await ensureRedis(REDIS_URL, log);
  await ensurePostgres(DATABASE_URL, log);
  // The database is recreated (ids restart at 1), so version keys from an earlier run would
  // outrank the new rows: start the test Redis DB empty too.
  // SELECT first, refused loudly: ioredis given a DB index the server lacks goes on with DB 0.
  await checkRedisDb(REDIS_URL, REDIS_DB, "TEST_REDIS_DB");
  const direct = new IORedis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await direct.connect();
  await direct.select(REDIS_DB);
  await direct.flushdb();
  direct.disconnect();
  await recreateDatabase(DATABASE_URL);
  await migrateDatabase(DATABASE_URL);
  // A small catalogue every test can read; tests that write create their own rows.
  await seedDatabase(DATABASE_URL, { categories: 6, products: 300, users: 30 });
  const gatewayToken = `test-${randomBytes(8).toString("hex")}`;
  const spareGatewayTokens = {
    engine: `engine-${randomBytes(8).toString("hex")}`,
    health: `health-${randomBytes(8).toString("hex")}`,
    faults: `faults-${randomBytes(8).toString("hex")}`,
    jobs: `jobs-${randomBytes(8).toString("hex")}`,
    publish: `publish-${randomBytes(8).toString("hex")}`,
    ratelimit: `ratelimit-${randomBytes(8).toString("hex")}`,
    dashboard: `dashboard-${randomBytes(8).toString("hex")}`,
    outbox: `outbox-${randomBytes(8).toString("hex")}`,
    failures: `failures-${randomBytes(8).toString("hex")}`,
    coalesce: `coalesce-${randomBytes(8).toString("hex")}`,
    client: `client-${randomBytes(8).toString("hex")}`,
    pipelining: `pipelining-${randomBytes(8).toString("hex")}`,
    lean: `lean-${randomBytes(8).toString("hex")}`,
    sessions: `sessions-${randomBytes(8).toString("hex")}`,
    preconditions: `preconditions-${randomBytes(8).toString("hex")}`,
    deadLetter: `dead-letter-${randomBytes(8).toString("hex")}`,
    costs: `costs-${randomBytes(8).toString("hex")}`,
  };
  const gateway = await startGateway({
    port: 0,
    redisUrl: REDIS_URL,
    tokens: Object.fromEntries(
      [gatewayToken, ...Object.values(spareGatewayTokens)].map((t) => [t, { db: REDIS_DB }]),
    ),
  });
  const hung = await startHungListener();
  const deadPort = await freePort();
  const dbUrl = new URL(DATABASE_URL);
  const slow = await startSlowForwarder(
    { host: dbUrl.hostname, port: Number(dbUrl.port || 5432) },
    SLOW_POSTGRES_DELAY_MS,
  );
  const proxy = await startWsProxy({
    port: 0,
    allowedTargets: [
      ...DEFAULT_ALLOWED_TARGETS,
      `${dbUrl.hostname}:${dbUrl.port || 5432}`,
      `127.0.0.1:${hung.port}`,
      `127.0.0.1:${slow.port}`,
      `127.0.0.1:${deadPort}`,
    ],
  });
  const stack: TestStack = {
    redisUrl: REDIS_URL,
    redisDb: REDIS_DB,
    gatewayUrl: gateway.url,
    gatewayToken,
    spareGatewayTokens,
    databaseUrl: DATABASE_URL,
    deadPostgresUrl: onPort(DATABASE_URL, deadPort),
    hungPostgresUrl: onPort(DATABASE_URL, hung.port),
    slowPostgresUrl: onPort(DATABASE_URL, slow.port),
    slowPostgresDelayMs: SLOW_POSTGRES_DELAY_MS,
    wsProxy: proxy.url,
    adminToken: `admin-${randomBytes(16).toString("hex")}`,
  };
  log(
    `ready in ${Date.now() - started} ms: gateway ${gateway.url} (redis db ${REDIS_DB}), ws proxy ${proxy.url}, ${DATABASE_URL}`,
  );
  return {
    stack,
    users: 0,
    async stop() {
      await Promise.allSettled([gateway.close(), proxy.close(), hung.close(), slow.close()]);
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.__edgecacheStack ??= startStack();
  const running = await shared.__edgecacheStack;
  running.users++;
  project.provide("stack", running.stack);
  return async () => {
    running.users--;
    if (running.users === 0) {
      shared.__edgecacheStack = undefined;
      await running.stop();
    }
  };
}
