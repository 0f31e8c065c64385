import { createExecutionContext, getQueueResult } from "cloudflare:test";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cacheOutbox, users } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import type { InvalidationEvent } from "../../src/domain/events";
import { commitWrite } from "../../src/domain/write";
import { processPurgeBatch } from "../../src/jobs/purge";
import { drainOutbox, type ScheduledReport } from "../../src/jobs/warm";
import { withDb } from "./db";
import { FakeQueue, purgeBatch, runScheduled, testEnv, within, withServices } from "./helpers";
import { testRedis } from "./stack";

/**
 * The outbox end to end: a real write whose cache apply fails (Redis unreachable, queue
 * refusing) leaves its event in cache_outbox and the old entry in Redis; the cron drains it,
 * or hands it to the queue when Redis is still down, and the consumer settles it.
 *
 * "Redis down" here is a token the gateway refuses (every request answers 401) rather than the
 * gateway's fault knobs: those are per token and shared with jobs.test.ts, which may run at the
 * same time and reset them.
 */
const run = Date.now().toString(36);
const prefix = `to${run}`;
const redis = testRedis();
const cache = new EdgeCache({ redis, prefix });
const REDIS_DOWN = { UPSTASH_REDIS_REST_TOKEN: `refused-${run}` };

let seq = 0;
const keyOf = (id: number) => `ou:${id}`;

/** A user of this test only, cached at its current version. */
async function cachedUser(): Promise<{ id: number; version: number }> {
  const label = `${run}-${++seq}`;
  const row = await withDb(async (db) => {
    const [inserted] = await db
      .insert(users)
      .values({ email: `outbox-${label}@example.com`, name: `Outbox ${label}` })
      .returning({ id: users.id, name: users.name, version: users.version });
    return inserted;
  });
  if (!row) throw new Error("no user inserted");
  expect(await cache.writeThrough(keyOf(row.id), row, row.version)).toEqual({ written: true });
  return { id: row.id, version: row.version };
}

/**
 * The write path with Redis unreachable and the queue refusing: the event stays in the outbox.
 * Returns the outbox row id and the committed version.
 */
async function deferredRename(userId: number): Promise<{ outboxId: number; version: number }> {
  const origin = `outbox-test-${run}-${userId}`;
  const queue = new FakeQueue();
  queue.fail = new Error("queue unavailable (test)");
  const outcome = await withServices(prefix, { ...REDIS_DOWN, PURGE_QUEUE: queue.asQueue() }, (s) =>
    commitWrite(s, {
      origin,
      async change(tx) {
        const [row] = await tx
          .update(users)
          .set({ name: `Renamed ${run}`, version: sql`${users.version} + 1` })
          .where(eq(users.id, userId))
          .returning({ version: users.version });
        if (!row) throw new Error("user vanished");
        return {
          result: row.version,
          cache: { keys: [keyOf(userId)], versions: { [keyOf(userId)]: row.version } },
        };
      },
    }),
  );
  expect(outcome.delivery).toBe("deferred");
  const [row] = await withDb((db) =>
    db
      .select({ id: cacheOutbox.id })
      .from(cacheOutbox)
      .where(sql`${cacheOutbox.event}->>'origin' = ${origin}`),
  );
  if (!row) throw new Error("no outbox row");
  return { outboxId: row.id, version: outcome.result };
}

async function outboxRow(id: number) {
  const [row] = await withDb((db) => db.select().from(cacheOutbox).where(eq(cacheOutbox.id, id)));
  if (!row) throw new Error(`outbox row ${id} missing`);
  return row;
}

/** Ages a row so the drain (which skips rows a writer may still be delivering) takes it. */
const age = (id: number, seconds: number) =>
  withDb((db) =>
    db
      .update(cacheOutbox)
      .set({ createdAt: sql`now() - make_interval(secs => ${seconds})` })
      .where(eq(cacheOutbox.id, id)),
  );

describe("outbox", () => {
  it("a write whose cache apply failed is invalidated by the next cron tick", async () => {
    const user = await cachedUser();
    const { outboxId, version } = await deferredRename(user.id);
    expect(version).toBe(user.version + 1);

    // The old entry is still there and still served: exactly what the outbox exists for.
    const before = await cache.inspect(keyOf(user.id), keyOf(user.id));
    expect(before.state).toBe("fresh");
    expect(before.entry?.version).toBe(user.version);
    expect(before.version).toBe(user.version);
    expect((await outboxRow(outboxId)).processedAt).toBeNull();

    await age(outboxId, 60);
    await runScheduled(testEnv(prefix));

    const after = await cache.inspect(keyOf(user.id), keyOf(user.id));
    expect(after.state).toBe("absent");
    expect(after.version).toBe(version);
    // A late fill of the old row can no longer land.
    expect(await cache.writeThrough(keyOf(user.id), { stale: true }, user.version)).toEqual({
      written: false,
      reason: "version",
    });
    expect((await outboxRow(outboxId)).processedAt).toBeInstanceOf(Date);

    const beat = await redis.get<ScheduledReport>(`${prefix}:job:warm`);
    if (!beat?.drain || !("applied" in beat.drain)) throw new Error("drain did not report");
    expect(beat.drain.error).toBeUndefined();
    expect(beat.drain.applied).toBeGreaterThanOrEqual(1);
    // Our row was a minute old: had it stayed pending, the lag would say so.
    expect(beat.lag).not.toBeNull();
    expect(beat.lag?.oldestAgeMs ?? 0).toBeLessThan(60_000);
  });

  it("a write that handed its event to the queue is not sent again by a drain of the same outage", async () => {
    const user = await cachedUser();
    const origin = `outbox-queued-${run}-${user.id}`;
    const queue = new FakeQueue();
    const outcome = await withServices(
      prefix,
      { ...REDIS_DOWN, PURGE_QUEUE: queue.asQueue() },
      (s) =>
        commitWrite(s, {
          origin,
          async change(tx) {
            const [row] = await tx
              .update(users)
              .set({ name: `Queued ${run}`, version: sql`${users.version} + 1` })
              .where(eq(users.id, user.id))
              .returning({ version: users.version });
            if (!row) throw new Error("user vanished");
            return {
              result: row.version,
              cache: { keys: [keyOf(user.id)], versions: { [keyOf(user.id)]: row.version } },
            };
          },
        }),
    );
    expect(outcome.delivery).toBe("queued");
    expect(queue.sent).toHaveLength(1);
    const [row] = await withDb((db) =>
      db.select().from(cacheOutbox).where(sql`${cacheOutbox.event}->>'origin' = ${origin}`),
    );
    if (!row) throw new Error("no outbox row");
    expect(row.queuedAt).toBeInstanceOf(Date);
    await age(row.id, 20);
    // Redis still down: the drain leaves the row to the queue, which has it already.
    const again = new FakeQueue();
    const drained = await withServices(
      prefix,
      { ...REDIS_DOWN, PURGE_QUEUE: again.asQueue() },
      (s) => drainOutbox(s, { olderThanMs: 10_000 }),
    );
    expect(drained.stoppedBy).toBe("redis-down");
    const resent = again.sent.filter((m) => (m as InvalidationEvent).outboxIds?.includes(row.id));
    expect(resent).toEqual([]);
    expect((await outboxRow(row.id)).processedAt).toBeNull();
  });

  it("with Redis still down the drain records the outage (no attempt) and hands the row to the queue", async () => {
    const user = await cachedUser();
    const { outboxId, version } = await deferredRename(user.id);
    // Younger than the cron's 30 s grace, so only this test's drain (10 s) takes it.
    await age(outboxId, 20);
    const options = { olderThanMs: 10_000 };

    const refusing = new FakeQueue();
    refusing.fail = new Error("queue unavailable (test)");
    const stuck = await withServices(
      prefix,
      { ...REDIS_DOWN, PURGE_QUEUE: refusing.asQueue() },
      (s) => drainOutbox(s, options),
    );
    expect(stuck.error).toMatch(/apply failed.*queue send failed too/s);
    expect(stuck.queued).toBe(0);
    let row = await outboxRow(outboxId);
    expect(row.processedAt).toBeNull();
    // An outage says nothing about the row: no attempt counts toward parking, however long
    // Redis stays down; the error is kept for a person to read.
    expect(row.attempts).toBe(0);
    expect(row.lastError).toMatch(/apply failed/);

    const queue = new FakeQueue();
    const handed = await withServices(
      prefix,
      { ...REDIS_DOWN, PURGE_QUEUE: queue.asQueue() },
      (s) => drainOutbox(s, options),
    );
    expect(handed.queued).toBeGreaterThanOrEqual(1);
    row = await outboxRow(outboxId);
    expect(row.attempts).toBe(0);
    expect(row.processedAt).toBeNull();
    const mine = queue.sent.filter((m) => (m as InvalidationEvent).outboxIds?.includes(outboxId));
    expect(mine).toEqual([
      expect.objectContaining({
        keys: [keyOf(user.id)],
        versions: { [keyOf(user.id)]: version },
        outboxIds: [outboxId],
      }),
    ]);

    // Redis is back: the consumer applies the message and settles the row.
    const batch = purgeBatch(mine.map((body, i) => ({ id: `o${i}`, body })));
    const ctx = createExecutionContext();
    const report = await withServices(prefix, {}, (s) =>
      processPurgeBatch(s, "edgecache-purge", batch.messages),
    );
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["o0"]);
    expect(report.outboxMarked).toBe(1);
    expect((await outboxRow(outboxId)).processedAt).toBeInstanceOf(Date);
    const after = await cache.inspect(keyOf(user.id), keyOf(user.id));
    expect(after.state).toBe("absent");
    expect(after.version).toBe(version);
  });
  it("a drain whose hand-over the queue does not take within QUEUE_TIMEOUT_MS ends, its rows still pending", async () => {
    const user = await cachedUser();
    const { outboxId } = await deferredRename(user.id);
    await age(outboxId, 20);
    const hung = new FakeQueue();
    hung.hang = true;
    const started = Date.now();
    const report = await within(
      10_000,
      withServices(
        prefix,
        { ...REDIS_DOWN, PURGE_QUEUE: hung.asQueue(), QUEUE_TIMEOUT_MS: "300" },
        (s) => drainOutbox(s, { olderThanMs: 10_000 }),
      ),
    );
    if (report === "no answer") throw new Error("the drain never ended");
    // The apply's Redis deadline, the SQL, one hand-over send: not a tick held by the queue.
    expect(Date.now() - started).toBeLessThan(5000);
    expect(hung.calls).toBe(1);
    expect(report.queued).toBe(0);
    expect(report.error).toMatch(/queue send failed too.*no answer within 300 ms/s);
    const row = await outboxRow(outboxId);
    expect(row.processedAt).toBeNull();
    expect(row.attempts).toBe(0);
  });
});
