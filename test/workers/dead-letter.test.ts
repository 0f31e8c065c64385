import { inArray, sql } from "drizzle-orm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { cacheOutbox, type JsonValue } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import type { Env } from "../../src/config/env";
import type { InvalidationEvent } from "../../src/domain/events";
import { MAX_OUTBOX_ATTEMPTS, outboxLag } from "../../src/domain/outbox";
import { type DeadLetterReport, processDeadLetters } from "../../src/jobs/dead-letter";
import type { PurgeMessage } from "../../src/jobs/purge";
import { drainOutbox } from "../../src/jobs/warm";
import { apiFor } from "./api";
import { withDb } from "./db";
import { consumeBatch, FakeQueue, type QueuedMessage, testEnv, withServices } from "./helpers";
import { gatewayControl, stack, testRedis } from "./stack";

/**
 * What the purge queue gives up on comes back through the outbox: an admin purge queued in a
 * Redis outage longer than the queue's retries is applied once Redis is back, a dead
 * continuation's rows go back to the drains at once, an event without rows becomes one, and a
 * message that is not an event is kept parked for a person. Real Postgres and gateway; the
 * queue is the Worker's own handler fed batches as Cloudflare would deliver them.
 */
const run = Date.now().toString(36);
const prefix = `dl${run}`;
const token = stack.spareGatewayTokens.deadLetter;
/** The Worker's Redis goes through its own token, so faults on it leave the test's own alone. */
const viaToken = { UPSTASH_REDIS_REST_TOKEN: token } satisfies Partial<Env>;
const redis = testRedis();
const cache = new EdgeCache({ redis, prefix });
const admin = apiFor(prefix, { admin: true });
const DLQ = "edgecache-purge-dlq";

let seq = 0;

const event = (change: Partial<InvalidationEvent>): InvalidationEvent => ({
  origin: "dead-letter-test",
  at: Date.now(),
  ...change,
});

const deliver = (messages: QueuedMessage[], queue?: string, overrides: Partial<Env> = {}) =>
  consumeBatch(messages, testEnv(prefix, { ...viaToken, ...overrides }), queue);

// Steps enough for a pattern purge to finish in one drain however many keys the shared test
// database holds (a drain without a queue cannot continue one).
const drain = () =>
  withServices(prefix, viaToken, (s) =>
    drainOutbox(s, { olderThanMs: 0, patterns: { steps: 1000, stepBudget: 1000 } }),
  );

const redisDown = (down: boolean) =>
  down
    ? gatewayControl("faults", { token, body: { failRate: 1 } })
    : gatewayControl("reset", { token });

async function rowsOf(ids: number[]) {
  const rows = await withDb((db) =>
    db.select().from(cacheOutbox).where(inArray(cacheOutbox.id, ids)),
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/** Rows of this file's prefix inserted after `afterId`. */
async function rowsAfter(afterId: number) {
  return withDb((db) =>
    db
      .select()
      .from(cacheOutbox)
      .where(sql`${cacheOutbox.prefix} = ${prefix} and ${cacheOutbox.id} > ${afterId}`)
      .orderBy(cacheOutbox.id),
  );
}

async function lastId(): Promise<number> {
  const [row] = await withDb((db) =>
    db.select({ id: sql<number>`coalesce(max(${cacheOutbox.id}), 0)::bigint` }).from(cacheOutbox),
  );
  return Number(row?.id ?? 0);
}

const beat = () => redis.get<DeadLetterReport & { at: number }>(`${prefix}:job:dead-letter`);

afterEach(async () => {
  await redisDown(false);
  vi.restoreAllMocks();
});

describe("an admin purge through the queue", () => {
  it("survives a Redis outage longer than the queue's retries: the drain applies it once Redis is back", async () => {
    const key = `dl:admin${++seq}`;
    await cache.set(key, "before the purge");
    const queue = new FakeQueue();
    const res = await admin<{ queued: boolean; outboxId: number | null }>(
      "POST",
      "/admin/invalidate",
      { body: { keys: [key], async: true }, env: { PURGE_QUEUE: queue, ...viaToken } },
    );
    expect(res.status).toBe(202);
    expect(res.body.queued).toBe(true);
    const outboxId = res.body.outboxId;
    if (outboxId === null) throw new Error("the admin purge was not recorded in the outbox");
    const [message] = queue.sent as InvalidationEvent[];
    expect(message?.outboxIds).toEqual([outboxId]);

    // Redis is down for every delivery the purge queue makes (max_retries 5: six deliveries).
    await redisDown(true);
    for (let attempts = 1; attempts <= 6; attempts++) {
      const result = await deliver([{ id: `a${seq}`, body: message, attempts }]);
      expect(result.explicitAcks).toEqual([]);
      expect(result.retryMessages.map((m) => m.msgId)).toEqual([`a${seq}`]);
    }
    // Cloudflare moves it to the dead-letter queue, whose consumer hands it back to the outbox.
    const dead = await deliver([{ id: `a${seq}`, body: message, attempts: 1 }], DLQ);
    expect(dead.explicitAcks).toEqual([`a${seq}`]);
    expect((await rowsOf([outboxId])).get(outboxId)?.queuedAt).toBeNull();
    expect((await cache.get(key))?.value).toBe("before the purge");

    await redisDown(false);
    const report = await drain();
    expect(report.applied).toBeGreaterThanOrEqual(1);
    expect(await cache.get(key)).toBeNull();
    expect((await rowsOf([outboxId])).get(outboxId)?.processedAt).not.toBeNull();
  });

  it("is accepted when the queue refuses it (the drain applies the row) and refused only when Postgres is down too", async () => {
    const key = `dl:refused${++seq}`;
    await cache.set(key, "before the purge");
    const queue = new FakeQueue();
    queue.fail = new Error("queue down (test)");
    const res = await admin<{ queued: boolean; outboxId: number | null }>(
      "POST",
      "/admin/invalidate",
      { body: { keys: [key], async: true }, env: { PURGE_QUEUE: queue, ...viaToken } },
    );
    expect(res.status).toBe(202);
    expect(res.body.queued).toBe(false);
    const outboxId = res.body.outboxId;
    if (outboxId === null) throw new Error("the admin purge was not recorded in the outbox");
    await drain();
    expect(await cache.get(key)).toBeNull();
    expect((await rowsOf([outboxId])).get(outboxId)?.processedAt).not.toBeNull();

    // Postgres down: the message alone is sent (no outbox id), or 503 when the queue refuses.
    const sent = new FakeQueue();
    const alone = await admin<{ queued: boolean; outboxId: number | null }>(
      "POST",
      "/admin/invalidate",
      {
        body: { keys: [key], async: true },
        env: { PURGE_QUEUE: sent, DATABASE_URL: stack.deadPostgresUrl, ...viaToken },
      },
    );
    expect(alone.status).toBe(202);
    expect(alone.body).toMatchObject({ queued: true, outboxId: null });
    expect((sent.sent[0] as InvalidationEvent).outboxIds).toBeUndefined();
    const neither = await admin<{ error: { code: string } }>("POST", "/admin/invalidate", {
      body: { keys: [key], async: true },
      env: { PURGE_QUEUE: queue, DATABASE_URL: stack.deadPostgresUrl, ...viaToken },
    });
    expect(neither.status).toBe(503);
    expect(neither.body.error.code).toBe("queue_unavailable");
  });
});

describe("the dead-letter consumer", () => {
  it("inserts an event without outbox rows as a pending row, cursors included, and the drain applies it", async () => {
    const key = `dl:norow${++seq}`;
    const family = `dlfam${seq}`;
    await cache.set(key, "stale");
    for (let i = 0; i < 30; i++) await cache.set(`${family}:${i}`, i);
    const before = await lastId();
    const result = await deliver(
      [
        // An admin purge queued while Postgres was down, and a continuation split without rows.
        { id: `k${seq}`, body: event({ keys: [key], origin: "admin" }) },
        {
          id: `p${seq}`,
          body: event({ patterns: [`${family}:*`], cursors: { [`${family}:*`]: "0" } }),
        },
      ],
      DLQ,
    );
    expect(result.explicitAcks.sort()).toEqual([`k${seq}`, `p${seq}`]);
    const rows = await rowsAfter(before);
    expect(rows).toHaveLength(2);
    expect(rows.map((r) => r.attempts)).toEqual([0, 0]);
    expect(rows[0]?.event).toMatchObject({ keys: [key], origin: "admin" });
    expect(rows[1]?.event).toMatchObject({ cursors: { [`${family}:*`]: "0" } });
    expect(await beat()).toMatchObject({ queue: DLQ, messages: 2, requeued: 2, parked: 0 });

    await drain();
    expect(await cache.get(key)).toBeNull();
    expect(await cache.get(`${family}:7`)).toBeNull();
    const settled = await rowsOf(rows.map((r) => r.id));
    expect([...settled.values()].every((r) => r.processedAt !== null)).toBe(true);
  });

  it("gives a dead continuation's rows back to the drains at once (they waited CONTINUATION_GRACE_S before)", async () => {
    const key = `dl:chain${++seq}`;
    await cache.set(key, "stale");
    // A row whose pattern purge was handed to the queue as a continuation (markContinued).
    const [row] = await withDb((db) =>
      db
        .insert(cacheOutbox)
        .values({
          event: { patterns: [key], origin: "dead-letter-test" } as { [k: string]: JsonValue },
          prefix,
          createdAt: sql`now() - interval '1 minute'`,
          continuedAt: sql`now()`,
        })
        .returning({ id: cacheOutbox.id }),
    );
    if (!row) throw new Error("no row");
    // While the chain runs, drains leave the row alone.
    await drain();
    expect((await cache.get(key))?.value).toBe("stale");

    const chain = event({ patterns: [key], cursors: { [key]: "0" }, outboxIds: [row.id] });
    const result = await deliver([{ id: `c${seq}`, body: chain, attempts: 1 }], DLQ);
    expect(result.explicitAcks).toEqual([`c${seq}`]);
    expect(await beat()).toMatchObject({ released: 1, alreadyApplied: 0 });
    expect((await rowsOf([row.id])).get(row.id)?.continuedAt).toBeNull();

    await drain();
    expect(await cache.get(key)).toBeNull();
    expect((await rowsOf([row.id])).get(row.id)?.processedAt).not.toBeNull();

    // Delivered again (a duplicate): its row is applied, nothing is inserted.
    const before = await lastId();
    await deliver([{ id: `c${seq}b`, body: chain }], DLQ);
    expect(await beat()).toMatchObject({ released: 0, alreadyApplied: 1, requeued: 0 });
    expect(await rowsAfter(before)).toEqual([]);
  });

  it("keeps a message that is not an event as a parked row with its reason, counted as stuck", async () => {
    const lagBefore = await withServices(prefix, {}, (s) => outboxLag(s.db, prefix));
    const before = await lastId();
    const result = await deliver(
      [
        { id: `g${++seq}`, body: "garbage", attempts: 2 },
        { id: `s${seq}`, body: { keys: "not-an-array", origin: "x", at: 1 } },
      ],
      DLQ,
    );
    expect(result.explicitAcks.sort()).toEqual([`g${seq}`, `s${seq}`]);
    const rows = await rowsAfter(before);
    expect(rows.map((r) => r.attempts)).toEqual([MAX_OUTBOX_ATTEMPTS, MAX_OUTBOX_ATTEMPTS]);
    expect(rows[0]?.event).toEqual({ deadLetter: `g${seq}`, body: "garbage" });
    expect(rows[0]?.lastError).toMatch(
      /dead letter g\d+ after 2 deliveries: not an invalidation event/,
    );
    expect(rows[1]?.lastError).toContain("keys");
    const lag = await withServices(prefix, {}, (s) => outboxLag(s.db, prefix));
    expect(lag.stuck - lagBefore.stuck).toBe(2);
    expect(await beat()).toMatchObject({ parked: 2, requeued: 0 });
    // Parked: no drain selects them.
    await drain();
    const after = await rowsOf(rows.map((r) => r.id));
    expect([...after.values()].every((r) => r.processedAt === null)).toBe(true);

    const stats = await admin<{ jobs: { deadLetter: { parked: number } | null } }>(
      "GET",
      "/admin/stats",
    );
    expect(stats.body.jobs.deadLetter?.parked).toBe(2);
  });

  it("records what Postgres cannot store as is (NUL, lone surrogates, an id past 2^53) without failing the rest of the batch", async () => {
    // One such message failed the batch's one INSERT on every delivery, and the batch's other
    // dead letters were lost with it after the last one.
    const key = `dl:batchmate${++seq}`;
    await cache.set(key, "stale");
    const before = await lastId();
    const result = await deliver(
      [
        { id: `ok${seq}`, body: event({ keys: [key], origin: "admin" }) },
        { id: `nul${seq}`, body: "bad\u0000body" },
        { id: `sur${seq}`, body: { note: "half \uD800 a pair" } },
        { id: `big${seq}`, body: event({ keys: [`${key}x`], outboxIds: [2 ** 64] }) },
        { id: `org${seq}`, body: event({ keys: [`${key}y`], origin: "ad\u0000min" }) },
      ],
      DLQ,
    );
    expect(result.explicitAcks).toHaveLength(5);
    const rows = await rowsAfter(before);
    const byMessage = new Map(rows.map((r) => [r.deadLetterId, r]));
    expect(byMessage.get(`ok${seq}`)?.attempts).toBe(0);
    expect(byMessage.get(`nul${seq}`)?.event).toEqual({
      deadLetter: `nul${seq}`,
      body: "bad\\0body",
    });
    expect(byMessage.get(`sur${seq}`)?.event).toEqual({
      deadLetter: `sur${seq}`,
      body: { note: "half \uFFFD a pair" },
    });
    // An outbox id Postgres's bigint cannot hold is not an event: parked, not released.
    expect(byMessage.get(`big${seq}`)?.attempts).toBe(MAX_OUTBOX_ATTEMPTS);
    expect(byMessage.get(`org${seq}`)?.attempts).toBe(0);
    await drain();
    expect(await cache.get(key)).toBeNull();
  });

  it("records a message delivered again (at least once, or a retried batch) once", async () => {
    const before = await lastId();
    const batch: QueuedMessage[] = [
      { id: `again${++seq}`, body: event({ keys: [`dl:again${seq}`], origin: "admin" }) },
      { id: `againbad${seq}`, body: "not an event" },
    ];
    for (let attempts = 1; attempts <= 3; attempts++) {
      const result = await deliver(
        batch.map((m) => ({ ...m, attempts })),
        DLQ,
      );
      expect(result.explicitAcks).toHaveLength(2);
    }
    const rows = await rowsAfter(before);
    expect(rows.map((r) => r.deadLetterId).sort()).toEqual([`again${seq}`, `againbad${seq}`]);
    expect(await beat()).toMatchObject({ messages: 2, requeued: 0, parked: 0, duplicates: 2 });
  });

  it("acks nothing while Postgres is down: retries with backoff, and logs a message whole on its last delivery", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const body = event({ keys: [`dl:pgdown${++seq}`] });
    const result = await deliver(
      [
        { id: `first${seq}`, body, attempts: 1 },
        { id: `last${seq}`, body, attempts: 11 },
      ],
      DLQ,
      { DATABASE_URL: stack.deadPostgresUrl },
    );
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m) => m.msgId).sort()).toEqual([`first${seq}`, `last${seq}`]);
    const lost = errors.mock.calls.map((c) => String(c[0])).filter((m) => m.includes("lost"));
    expect(lost).toHaveLength(1);
    expect(lost[0]).toContain(`last${seq}`);
    expect(lost[0]).toContain(`dl:pgdown${seq}`);
    expect(await beat()).toMatchObject({ retried: 2 });

    // The delays (the batch result above does not carry them): a minute, doubling to an hour.
    const delays: (number | undefined)[] = [];
    const message = (attempts: number): PurgeMessage => ({
      id: `m${attempts}`,
      body,
      attempts,
      ack: () => {
        throw new Error("acked while Postgres is down");
      },
      retry: (options) => delays.push(options?.delaySeconds),
    });
    await withServices(prefix, { ...viaToken, DATABASE_URL: stack.deadPostgresUrl }, (s) =>
      processDeadLetters(s, DLQ, [1, 2, 7, 11].map(message)),
    );
    expect(delays).toEqual([60, 120, 3600, 3600]);
  });
});
