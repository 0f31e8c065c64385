/**
 * Outbox drain throughput: seeds N pending outbox rows in a throwaway database, then runs the
 * drain exactly as the cron tick does (budget 40 subrequests, 10 reserved for the warmer,
 * 1,000 rows per round, 15 s) until the outbox is empty, through the real Upstash gateway
 * (with injected latency, like an edge → Upstash hop) and the Neon WebSocket proxy.
 * Reports rows per tick and the time a tick takes.
 *
 *   npm run bench:drain                       # 20,000 rows, 5 ± 2 ms gateway latency
 *   npm run bench:drain -- --rows=50000 --latency=20 --batch=500 --budget=40
 *
 * Uses a private redis-server on a free port (never the shared one) and the database
 * edgecache_bench_drain (recreated, and dropped at the end), never the dev database.
 */
import { randomBytes } from "node:crypto";
import { neonConfig } from "@neondatabase/serverless";
import pg from "pg";
import ws from "ws";
import { ensureDatabase, migrateDatabase } from "../db/migrate";
import { Budget, drainOutbox } from "../src/jobs/warm";
import { createServices } from "../src/runtime/services";
import { startOwnRedis } from "../tools/lib/own-redis";
import { ensurePostgres } from "../tools/lib/services";
import { startWsProxy } from "../tools/neon-ws-proxy/server";
import { gatewayControl } from "../tools/upstash-gateway/control";
import { startGateway } from "../tools/upstash-gateway/server";
import { benchArgs } from "./lib/args";

const ADMIN_URL = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const args = benchArgs(
  "npm run bench:drain --",
  `Outbox drain throughput: N pending rows drained as the cron tick does, through the gateway and
the Neon WebSocket proxy; rows per tick and time per tick. Database edgecache_bench_drain on the
server of BENCH_PG_URL (now ${ADMIN_URL.replace(/\/\/[^@/]*@/, "//…@")}; recreated, dropped at the end).`,
  {
    rows: { default: 20_000, help: "pending outbox rows to drain" },
    batch: { default: 1000, help: "rows per drain round" },
    budget: { default: 40, help: "subrequests per tick" },
    reserve: { default: 10, help: "of those, kept for the warmer" },
    latency: { default: 5, help: "gateway latency per request, ms" },
    jitter: { default: 2, help: "± jitter on that latency, ms" },
  },
);
const ROWS = args.rows;
const BATCH = args.batch;
const BUDGET = args.budget;
const RESERVE = args.reserve;
const LATENCY = args.latency;
const JITTER = args.jitter;
const DB_NAME = "edgecache_bench_drain";

const log = (line: string) => console.log(`[bench] ${line}`);

async function dropDatabase(): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${DB_NAME} with (force)`);
  } finally {
    await admin.end();
  }
}

async function recreateDatabase(): Promise<string> {
  await dropDatabase();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${DB_NAME}`;
  await ensureDatabase(url.toString());
  await migrateDatabase(url.toString());
  return url.toString();
}

async function seed(databaseUrl: string, prefix: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // Each row: a key, a tag (100 distinct) and a version, like a product write.
    await client.query(
      `insert into cache_outbox (event, prefix, created_at)
       select jsonb_build_object(
                'keys', jsonb_build_array('bench:' || i),
                'tags', jsonb_build_array('bench-tag:' || (i % 100)),
                'versions', jsonb_build_object('bench:' || i, 2),
                'origin', 'bench'),
              $1, now() - interval '1 minute'
         from generate_series(1, $2) as i`,
      [prefix, ROWS],
    );
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  await ensurePostgres(ADMIN_URL, log);
  // A private redis-server on a free port: the shared one is never touched (this used to leave
  // ~20,000 version keys behind in its DB 15 on every run).
  const own = await startOwnRedis();
  log(`recreating ${DB_NAME} and migrating`);
  const databaseUrl = await recreateDatabase();
  const token = `bench-${randomBytes(6).toString("hex")}`;
  const gateway = await startGateway({
    port: 0,
    redisUrl: own.url,
    tokens: { [token]: { db: 0 } },
  });
  const proxy = await startWsProxy({ port: 0 });
  neonConfig.webSocketConstructor = ws;
  try {
    await gatewayControl(gateway.url, token, "faults", { latencyMs: LATENCY, jitterMs: JITTER });
    const prefix = `bd${Date.now().toString(36)}`;
    log(`seeding ${ROWS.toLocaleString("en")} outbox rows under prefix ${prefix}`);
    await seed(databaseUrl, prefix);
    const env = {
      UPSTASH_REDIS_REST_URL: gateway.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      DATABASE_URL: databaseUrl,
      NEON_WS_PROXY: proxy.url,
      ADMIN_TOKEN: "bench-admin-token-0123456789",
      CACHE_PREFIX: prefix,
    };
    log(
      `draining like the cron: budget ${BUDGET} subrequests (${RESERVE} reserved), ${BATCH} rows per round, gateway latency ${LATENCY} ± ${JITTER} ms`,
    );
    const ticks: { rows: number; ms: number; rounds: number; subrequests: number }[] = [];
    let left = ROWS;
    while (left > 0) {
      const services = createServices(env);
      const budget = new Budget(BUDGET);
      budget.spend(2); // the tick's lag query and heartbeat, as in runScheduled
      const report = await drainOutbox(
        services,
        { olderThanMs: 0, batch: BATCH, reserve: RESERVE },
        budget,
      );
      await services.dispose();
      if (report.error) throw new Error(`drain failed: ${report.error}`);
      if (report.applied === 0) throw new Error(`no progress (${report.stoppedBy})`);
      left -= report.applied;
      ticks.push({
        rows: report.applied,
        ms: report.elapsedMs,
        rounds: report.rounds,
        subrequests: budget.used,
      });
      log(
        `tick ${ticks.length}: ${report.applied} rows in ${report.rounds} rounds, ${report.elapsedMs} ms, ${budget.used}/${BUDGET} subrequests (${report.stoppedBy}); ${left} left`,
      );
    }
    const full = ticks.filter((t) => t.rows === ticks[0]?.rows);
    const rows = full[0]?.rows ?? 0;
    const ms = full.reduce((n, t) => n + t.ms, 0) / Math.max(1, full.length);
    console.log(
      `\nrows per tick ${rows} (${full.length} full ticks), ${Math.round(ms)} ms per tick, ` +
        `${Math.round((rows / Math.max(1, ms)) * 1000)} rows/s while draining; ` +
        `at one tick per 5 minutes: ${(rows * 12).toLocaleString("en")} rows/hour`,
    );
  } finally {
    await Promise.allSettled([gateway.close(), proxy.close()]);
    await own.stop();
    await dropDatabase().catch((error: unknown) => log(`${DB_NAME} not dropped: ${String(error)}`));
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
