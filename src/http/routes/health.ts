import { sql } from "drizzle-orm";
import { Hono } from "hono";
import { describeThrown } from "../../db/errors";
import { withDeadline } from "../../db/guard";
import type { AppEnv } from "../context";
import { HttpError } from "../errors";

/**
 * What /health says about one dependency. `problem` is a fixed word, never the driver's text:
 * those messages name internal hosts and URLs. The details go to the log.
 */
interface Probe {
  ok: boolean;
  latencyMs: number;
  problem?: "timeout" | "unreachable" | "rejected";
}

const PROBE_TIMEOUT_MS = 3000;

function classify(err: unknown): NonNullable<Probe["problem"]> {
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 6; depth++) {
    if (current instanceof Error && current.name === "TimeoutError") return "timeout";
    if (current instanceof Error && /no answer within|timeout/i.test(current.message)) {
      return "timeout";
    }
    if (
      current instanceof Error &&
      /\b401\b|unauthori[sz]ed|WRONGPASS|NOAUTH/i.test(current.message)
    ) {
      return "rejected";
    }
    // Postgres SQLSTATE class 28, invalid authorization (unknown role 28000, wrong password
    // 28P01): the server answered and refused our credentials.
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^28[0-9A-Z]{3}$/.test(code)) return "rejected";
    current = (current as { cause?: unknown }).cause;
  }
  return "unreachable";
}

/** Runs a check with a deadline so /health answers even when a dependency hangs. */
async function probe(name: string, check: () => Promise<unknown>): Promise<Probe> {
  const started = performance.now();
  try {
    await withDeadline(check(), PROBE_TIMEOUT_MS, `health ${name}`);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    const problem = classify(err);
    console.error(`health: ${name} ${problem}: ${describeThrown(err)}`, err);
    return { ok: false, latencyMs: Math.round(performance.now() - started), problem };
  }
}

/**
 * `200 {"status":"ok",…}` or `503 {"status":"degraded",…}` naming the dependency that is down
 * (`redis` / `postgres`: `{ok:false, problem:"timeout"|"unreachable"|"rejected"}`).
 * `?postgres=skip` leaves Postgres out (`postgres: {skipped: true}`): an uptime monitor that
 * probes every minute would otherwise keep a Neon compute from ever scaling to zero.
 */
export const health = new Hono<AppEnv>().get("/health", async (c) => {
  const { redis, db } = c.var.services;
  const postgres = c.req.query("postgres");
  if (postgres !== undefined && postgres !== "skip") {
    const message = `the only value is "skip", got ${JSON.stringify(postgres.slice(0, 40))}`;
    throw new HttpError(400, "validation_failed", `Invalid query: postgres: ${message}`, {
      target: "query",
      issues: [{ path: "postgres", message }],
    });
  }
  const skipPostgres = postgres === "skip";
  const [redisProbe, postgresProbe] = await Promise.all([
    probe("redis", async () => {
      const pong = await redis.ping();
      if (pong !== "PONG") throw new Error(`unexpected PING reply ${JSON.stringify(pong)}`);
    }),
    skipPostgres ? null : probe("postgres", () => db.execute(sql`select 1`)),
  ]);
  const postgresOk = postgresProbe?.ok ?? true;
  const ok = redisProbe.ok && postgresOk;
  const down = [redisProbe.ok ? [] : ["redis"], postgresOk ? [] : ["postgres"]].flat();
  c.header("Cache-Control", "no-store");
  if (!ok) c.header("Retry-After", "5");
  return c.json(
    {
      status: ok ? "ok" : "degraded",
      ...(down.length > 0 ? { down } : {}),
      redis: redisProbe,
      postgres: postgresProbe ?? { skipped: true },
    },
    ok ? 200 : 503,
  );
});
