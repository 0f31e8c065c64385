import { sql } from "drizzle-orm";
import { Hono } from "hono";
import type { AppEnv } from "../context";

interface Probe {
  ok: boolean;
  latencyMs: number;
  error?: string;
}

const PROBE_TIMEOUT_MS = 3000;

/** drizzle wraps driver errors ("Failed query: …"); the useful reason is at the end of the chain. */
function describeError(err: unknown): string {
  let current: unknown = err;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  if (current instanceof Error) return current.message;
  if (typeof current === "object" && current !== null && "message" in current) {
    return String(current.message);
  }
  return String(current);
}

/** Runs a check with a deadline so /health answers even when a dependency hangs. */
async function probe(check: () => Promise<unknown>): Promise<Probe> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)),
          PROBE_TIMEOUT_MS,
        );
      }),
    ]);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    const message = describeError(err);
    return { ok: false, latencyMs: Math.round(performance.now() - started), error: message };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

export const health = new Hono<AppEnv>().get("/health", async (c) => {
  const { redis, db } = c.var.services;
  const [redisProbe, postgresProbe] = await Promise.all([
    probe(async () => {
      const pong = await redis.ping();
      if (pong !== "PONG") throw new Error(`unexpected PING reply ${JSON.stringify(pong)}`);
    }),
    probe(() => db.execute(sql`select 1`)),
  ]);
  const ok = redisProbe.ok && postgresProbe.ok;
  c.header("Cache-Control", "no-store");
  return c.json(
    { status: ok ? "ok" : "degraded", redis: redisProbe, postgres: postgresProbe },
    ok ? 200 : 503,
  );
});
