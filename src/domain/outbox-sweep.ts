import type { AppConfig } from "../config/env";
import { describeThrown } from "../db/errors";
import type { Redis } from "../redis/client";

/**
 * When a quiet cron tick may leave Postgres alone (`OUTBOX_SWEEP_MINUTES` > 0), so that a
 * Neon compute with nothing to do can scale to zero (it needs 5 idle minutes; a cron every 5
 * minutes that reads the outbox on every tick never gives it them).
 *
 * The drain's `SELECT` is the backstop for a row whose writer committed it and then died before
 * applying it: nothing else knows that row exists. So whatever may commit a pending row (a
 * write, the dead-letter consumer, an async admin purge, an admin's retry of a parked row) first
 * records an **intent** in Redis (`{prefix}:outbox:intent`, a plain `SET` of its clock and a
 * random suffix), and awaits it before its `COMMIT`. A tick that sweeps records what it saw
 * (`{prefix}:outbox:swept`: when it started, the intent it read before its `SELECT`, and
 * whether it left no row pending). The next tick skips Postgres only when that sweep was clean,
 * no intent was recorded since (the value is the same) nor within WRITE_WINDOW of the sweep's
 * start (a writer that recorded its intent just before the sweep may commit just after its
 * snapshot), and the sweep is younger than `OUTBOX_SWEEP_MINUTES`. Anything unknown (a key
 * missing, Redis not answering, a value it cannot read) sweeps: the mode fails towards reading
 * Postgres, never towards skipping it. A sweep that finds no intent recreates one
 * (`seedIntent`), so that a missing intent always means a lost one.
 *
 * What it costs: one more Redis request per write (the intent, sent beside the transaction, so
 * it adds no round trip unless Redis is slower than the statements) and per tick (the state,
 * one `MGET`), and one `SET` per sweeping tick. What it leaves open: a write whose intent could
 * not be recorded (Redis unreachable) and whose invalidation then reached neither Redis nor the
 * queue waits for the next periodic sweep, at most `OUTBOX_SWEEP_MINUTES` (README, "What it costs
 * to run"); with the setting at 0 (the default) every tick sweeps, as before.
 *
 * @example
 *   // A writer (src/domain/write.ts):
 *   const intent = recordOutboxIntent(services.redis, services.config);
 *   await db.transaction(async (tx) => { …; await insertOutbox(tx, …); await intent; });
 *   // The cron (src/jobs/sweep-tick.ts, openSweep):
 *   const decision = decideSweep(await readSweepState(redis, prefix), Date.now(), policy);
 */

export const intentKey = (prefix: string) => `${prefix}:outbox:intent`;
export const sweptKey = (prefix: string) => `${prefix}:outbox:swept`;

/**
 * How long after recording its intent a writer may still commit: its connect and a few
 * statements, each within its deadline (DB_CONNECT_TIMEOUT_MS, DB_QUERY_TIMEOUT_MS), or the
 * intent's SET it awaits before COMMIT, whichever is longer (REDIS_TIMEOUT_MS per attempt, and
 * the client retries once: src/redis/client.ts), then the COMMIT, plus a margin for the clocks
 * of two isolates. A sweep that started within this of the latest intent may have missed that
 * writer's commit, so it does not let the next tick skip.
 */
export function writeWindowMs(
  config: Pick<AppConfig, "DB_CONNECT_TIMEOUT_MS" | "DB_QUERY_TIMEOUT_MS" | "REDIS_TIMEOUT_MS">,
) {
  const statements = config.DB_CONNECT_TIMEOUT_MS + 7 * config.DB_QUERY_TIMEOUT_MS;
  const intent = 2 * config.REDIS_TIMEOUT_MS + 100;
  return Math.max(statements, intent) + config.DB_QUERY_TIMEOUT_MS + CLOCK_MARGIN_MS;
}
const CLOCK_MARGIN_MS = 30_000;

/** What the last sweeping tick recorded. */
export interface SweepRecord {
  /** When it started (before its SELECT), in ms. */
  at: number;
  /** It left no pending row (parked ones aside) behind: nothing for a drain to do. */
  clean: boolean;
  /** The intent it read before its SELECT (null: none was recorded). */
  intent: string | null;
}

export interface SweepState {
  intent: string | null;
  swept: SweepRecord | null;
}

export interface SweepDecision {
  sweep: boolean;
  /** Why, in words, for the tick's report and log. */
  why: string;
}

/** The decision with the mode off (OUTBOX_SWEEP_MINUTES=0). */
export const EVERY_TICK: SweepDecision = Object.freeze({
  sweep: true,
  why: "every tick (OUTBOX_SWEEP_MINUTES=0)",
});

/**
 * Records that a pending outbox row may be committed from now on. Never rejects: a failure is
 * logged and the write goes on (its invalidation still goes to Redis or the queue as always;
 * see the module comment for what is left open). Resolves at once when the mode is off.
 */
export function recordOutboxIntent(
  redis: Redis,
  config: Pick<AppConfig, "CACHE_PREFIX" | "OUTBOX_SWEEP_MINUTES">,
): Promise<void> {
  if (config.OUTBOX_SWEEP_MINUTES <= 0) return Promise.resolve();
  return redis.set(intentKey(config.CACHE_PREFIX), intentValue(Date.now(), "w")).then(
    () => undefined,
    (error: unknown) =>
      console.warn(
        `outbox intent not recorded (a quiet cron tick may skip this write's row until the periodic sweep): ${describeThrown(error)}`,
      ),
  );
}

/**
 * An intent's value: its time, then `w` (a writer's) or `s` (recreated by a sweep) and a random
 * suffix. Unique, so a later intent always changes the value whatever the writers' clocks; the
 * letter keeps it a string (@upstash/redis reads a value that parses as JSON as a number).
 */
function intentValue(at: number, kind: "w" | "s"): string {
  return `${at}.${kind}${Math.random().toString(36).slice(2, 10)}`;
}

/** The intent and the last sweep's record, in one request. */
export async function readSweepState(redis: Redis, prefix: string): Promise<SweepState> {
  const [intent, swept] = await redis.mget<[unknown, unknown]>(intentKey(prefix), sweptKey(prefix));
  return { intent: intentOf(intent), swept: recordOf(swept) };
}

/**
 * Recreates a missing intent record (`SET NX`) for a sweep that found none, and returns the
 * value it set, or null when a writer's intent got there first (or Redis failed): then the
 * sweep records that it saw none, and the next tick, finding one, sweeps again.
 *
 * Without it a missing key meant two things: no write ever, or an intent evicted (Upstash falls
 * back to evicting keys without a TTL) before a tick read it. A sweep that saw none, then a
 * writer's intent evicted, read as "no write since" and let a dead writer's row wait for the
 * periodic sweep. With it, a missing key is never quiet (`decideSweep`). Its time is the
 * sweep's start, so the tick after it sweeps too (the write window): an intent evicted just
 * before this sweep read the state may belong to a writer that commits after its snapshot.
 */
export async function seedIntent(redis: Redis, prefix: string, at: number): Promise<string | null> {
  const value = intentValue(at, "s");
  const set = await redis.set(intentKey(prefix), value, { nx: true });
  return set === "OK" ? value : null;
}

/** Records the sweep this tick made (`at` taken before its SELECT). */
export async function recordSweep(redis: Redis, prefix: string, record: SweepRecord) {
  await redis.set(sweptKey(prefix), record);
}

/**
 * Whether this tick reads the outbox: pure, so every rule is tested on its own
 * (test/node/outbox-sweep.test.ts); the cron's tests run it against Redis and Postgres.
 *
 * @example
 *   decideSweep({ intent: null, swept: null }, Date.now(), { everyMs: 3_600_000, windowMs: 75_000 });
 *   // { sweep: true, why: "no record of an earlier sweep" }
 */
export function decideSweep(
  state: SweepState,
  now: number,
  policy: { everyMs: number; windowMs: number },
): SweepDecision {
  if (policy.everyMs <= 0) return EVERY_TICK;
  const { intent, swept } = state;
  if (!swept) return { sweep: true, why: "no record of an earlier sweep" };
  if (!swept.clean) return { sweep: true, why: "the last sweep left rows pending" };
  if (intent !== swept.intent) {
    return {
      sweep: true,
      why: intent === null ? "the intent record is gone" : "a write since the last sweep",
    };
  }
  if (intent !== null) {
    const at = Number.parseInt(intent, 10);
    // A writer that recorded it just before the sweep may have committed after its snapshot.
    if (!Number.isFinite(at) || at + policy.windowMs >= swept.at) {
      return {
        sweep: true,
        why: /^\d+\.s/.test(intent)
          ? "the last sweep recreated the intent record (one may have been lost just before)"
          : "a write just before the last sweep",
      };
    }
  }
  const age = now - swept.at;
  if (age >= policy.everyMs || age < 0) {
    return { sweep: true, why: `periodic (last sweep ${Math.round(age / 60_000)} min ago)` };
  }
  // None recorded, nor seen by the last sweep: never written, or a writer's evicted since; the
  // two cannot be told apart (the sweep recreates it: seedIntent).
  if (intent === null) return { sweep: true, why: "no intent record (evicted, or never written)" };
  return {
    sweep: false,
    why: `quiet: no write since the clean sweep of ${new Date(swept.at).toISOString()}`,
  };
}

function intentOf(value: unknown): string | null {
  // @upstash/redis reads "1732…" back as a number when it parses as one.
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return null;
}

function recordOf(value: unknown): SweepRecord | null {
  if (typeof value !== "object" || value === null) return null;
  const { at, clean, intent } = value as Record<string, unknown>;
  if (typeof at !== "number" || !Number.isFinite(at) || typeof clean !== "boolean") return null;
  if (intent !== null && typeof intent !== "string") return null;
  return { at, clean, intent };
}
