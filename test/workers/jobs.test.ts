import { createExecutionContext, getQueueResult } from "cloudflare:test";
import { inArray } from "drizzle-orm";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { cacheOutbox, type JsonValue, products, users } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import type { Env } from "../../src/config/env";
import type { InvalidationEvent } from "../../src/domain/events";
import type { Warmable } from "../../src/domain/warmable";
import { anyWarmable } from "../../src/domain/warmables";
import {
  PURGE_SUBREQUESTS,
  type PurgeReport,
  processPurgeBatch,
  retryDelaySeconds,
} from "../../src/jobs/purge";
import { describeWarm, warmHotKeys } from "../../src/jobs/warm";
import { withDb } from "./db";
import {
  consumeBatch,
  FakeQueue,
  purgeBatch,
  type QueuedMessage,
  runScheduled,
  testEnv,
  within,
  withServices,
} from "./helpers";
import { gatewayControl, scanKeys, stack, testRedis } from "./stack";

/**
 * The queue consumer, the cron tick and the warmer against the real gateway and Postgres.
 * Only the queue producer is a stand-in (Cloudflare's Queue has no local twin we can read).
 */
const run = Date.now().toString(36);
const prefix = `tj${run}`;
const redis = testRedis();
const cache = new EdgeCache({ redis, prefix });

// ---------------------------------------------------------------- helpers

let seq = 0;

const consume = (messages: QueuedMessage[], overrides: Partial<Env> = {}) =>
  consumeBatch(messages, testEnv(prefix, overrides));

const event = (change: Partial<InvalidationEvent>): InvalidationEvent => ({
  origin: "jobs-test",
  at: Date.now(),
  ...change,
});

const purgeBeat = () => redis.get<PurgeReport & { at: number }>(`${prefix}:job:purge`);

// ---------------------------------------------------------------- queue consumer

describe("queue consumer", () => {
  afterEach(async () => {
    await gatewayControl("reset", { token: stack.spareGatewayTokens.faults });
  });

  it("applies a batch with duplicates once, and a redelivery changes nothing", async () => {
    const key = `dup:${++seq}`;
    const tagged = `duptagged:${seq}`;
    const tag = `duptag-${seq}`;
    await cache.writeThrough(key, { v: 1 }, 1);
    await cache.set(tagged, { v: 1 }, { tags: [tag] });
    expect((await cache.get(tagged))?.value).toEqual({ v: 1 });

    const body = event({ keys: [key], tags: [tag], versions: { [key]: 2 } });
    const first = await consume([
      { id: "d1", body },
      { id: "d2", body },
    ]);
    expect(first.explicitAcks.sort()).toEqual(["d1", "d2"]);
    expect(first.retryMessages).toEqual([]);
    const beat = await purgeBeat();
    // Merged: one key, one tag, one version, whatever the number of copies.
    expect(beat).toMatchObject({
      queue: "edgecache-purge",
      messages: 2,
      acked: 2,
      retried: 0,
      applied: { keys: 1, tags: 1, versions: 1, removed: 1, versionsAdvanced: 1 },
    });
    const after = await cache.inspect(key, key);
    expect(after.state).toBe("absent");
    expect(after.version).toBe(2);
    expect(await cache.get(tagged)).toBeNull();

    const again = await consume([{ id: "d3", body }]);
    expect(again.explicitAcks).toEqual(["d3"]);
    const redelivered = await cache.inspect(key, key);
    expect(redelivered.state).toBe("absent");
    expect(redelivered.version).toBe(2);
    expect(await cache.get(tagged)).toBeNull();
    expect((await purgeBeat())?.applied).toMatchObject({ removed: 0, versionsAdvanced: 0 });
  });

  it("never moves a version back: v5 then v3, in one batch or across batches", async () => {
    const a = `ooo:a${++seq}`;
    const b = `ooo:b${seq}`;
    const inBatch = await consume([
      { id: "v5", body: event({ versions: { [a]: 5 } }) },
      { id: "v3", body: event({ versions: { [a]: 3 } }) },
    ]);
    expect(inBatch.explicitAcks.sort()).toEqual(["v3", "v5"]);
    expect((await cache.inspect(a, a)).version).toBe(5);

    await consume([{ id: "b5", body: event({ versions: { [b]: 5 } }) }]);
    await consume([{ id: "b3", body: event({ keys: [b], versions: { [b]: 3 } }) }]);
    expect((await cache.inspect(b, b)).version).toBe(5);
    // And a late write of v4 is refused: the cache knows v5.
    expect(await cache.writeThrough(b, { late: true }, 4)).toEqual({
      written: false,
      reason: "version",
    });
  });

  it("retries malformed messages, never acks them, and logs poison on the last delivery only", async () => {
    const errors = vi.spyOn(console, "error");
    try {
      const key = `poison:${++seq}`;
      await cache.set(key, "here");
      const result = await consume([
        { id: "good", body: event({ keys: [key] }) },
        { id: "shape", body: { keys: "not-an-array" }, attempts: 1 },
        { id: "glob-in-key", body: event({ keys: ["product:*"] }), attempts: 2 },
        // Redis refuses a SCAN cursor above 2^64 - 1: malformed, not a Redis failure.
        {
          id: "cursor-too-big",
          body: event({ patterns: ["x:*"], cursor: "18446744073709551616" }),
          attempts: 1,
        },
        // max_retries = 5 counts retries: attempt 5 is not the last, attempt 6 is.
        { id: "fifth", body: "garbage", attempts: 5 },
        { id: "last", body: "garbage", attempts: 6 },
      ]);
      expect(result.explicitAcks).toEqual(["good"]);
      expect(result.retryMessages.map((m) => m.msgId).sort()).toEqual([
        "cursor-too-big",
        "fifth",
        "glob-in-key",
        "last",
        "shape",
      ]);
      expect(await cache.get(key)).toBeNull();
      expect(await purgeBeat()).toMatchObject({ acked: 1, retried: 5, invalid: 5, poison: 1 });
      const logged = errors.mock.calls.map((c) => String(c[0]));
      expect(logged.some((line) => /poison message last \(attempt 6 of 6,/.test(line))).toBe(true);
      expect(logged.some((line) => /poison message (shape|glob-in-key|fifth)/.test(line))).toBe(
        false,
      );
    } finally {
      errors.mockRestore();
    }
  });

  it("a message Redis refuses is isolated: the rest of its batch is applied and acked, and it is logged as poison on its last delivery", async () => {
    // Found by an operator audit: one message naming a tag whose key holds another type
    // (WRONGTYPE) failed the batch's one merged apply, so every message was retried, none
    // applied, and all of them reached the dead-letter queue without a line in the logs.
    const errors = vi.spyOn(console, "error");
    try {
      const tag = `refused-${++seq}`;
      await redis.hset(`${prefix}:t:${tag}`, { not: "a counter" });
      const good = [1, 2, 3].map((i) => `refused-good:${seq}:${i}`);
      await Promise.all(good.map((key) => cache.set(key, "old")));
      const messages = (attempts: number) => [
        ...good.map((key, i) => ({ id: `good${i}`, body: event({ keys: [key] }), attempts })),
        { id: "refused", body: event({ tags: [tag] }), attempts },
      ];
      const first = await consume(messages(1));
      expect(first.explicitAcks.sort()).toEqual(["good0", "good1", "good2"]);
      expect(first.retryMessages.map((m) => m.msgId)).toEqual(["refused"]);
      for (const key of good) expect(await cache.get(key)).toBeNull();
      const quiet = errors.mock.calls.map((c) => String(c[0]));
      expect(quiet.some((line) => /poison message refused/.test(line))).toBe(false);
      // On its last delivery (max_retries 5 + 1) it is named before the dead-letter queue.
      const last = await consume([{ id: "refused", body: event({ tags: [tag] }), attempts: 6 }]);
      expect(last.retryMessages.map((m) => m.msgId)).toEqual(["refused"]);
      const logged = errors.mock.calls.map((c) => String(c[0]));
      expect(
        logged.some((line) =>
          /poison message refused \(attempt 6 of 6,.*Redis refuses it/.test(line),
        ),
      ).toBe(true);
      expect(await purgeBeat()).toMatchObject({ acked: 0, retried: 1, poison: 1 });
    } finally {
      errors.mockRestore();
    }
  });

  it("purges a pattern in bounded steps and re-enqueues the cursor until done", async () => {
    const family = `pat${++seq}`;
    const count = 3000;
    await Promise.all(
      Array.from({ length: count }, (_, i) => cache.set(`${family}:${i}`, i, { ttl: 600_000 })),
    );
    const keep = `${family}x:1`; // same stem, outside the glob
    await cache.set(keep, "stays", { ttl: 600_000 });
    const countLeft = async () => {
      let n = 0;
      for await (const keys of scanKeys(redis, `${prefix}:e:${family}:*`, 1000)) n += keys.length;
      return n;
    };
    expect(await countLeft()).toBe(count);

    const queue = new FakeQueue();
    const options = { patterns: { steps: 2, stepBudget: 500 } };
    const first = purgeBatch([
      {
        id: "p1",
        body: event({ patterns: [`${family}:*`], keys: [`${family}:0`], outboxIds: [987654321] }),
      },
    ]);
    const ctx = createExecutionContext();
    const report = await withServices(prefix, { PURGE_QUEUE: queue.asQueue() }, (s) =>
      processPurgeBatch(s, "edgecache-purge", first.messages, options),
    );
    // 2 steps of 500 keys cannot cover a keyspace holding 3,000 of ours: the rest is queued.
    expect(report.patterns.steps).toBe(2);
    expect(report.patternsContinued).toBe(1);
    expect((await getQueueResult(first, ctx)).explicitAcks).toEqual(["p1"]);
    expect(queue.sent).toHaveLength(1);
    const continuation = queue.sent[0] as InvalidationEvent;
    expect(continuation).toMatchObject({
      patterns: [`${family}:*`],
      origin: "jobs-test",
      outboxIds: [987654321],
    });
    expect(continuation.cursors?.[`${family}:*`]).toMatch(/^[1-9]\d*$/);
    expect(report.outboxMarked).toBe(0);

    let deleted = report.patterns.deleted;
    let pending: unknown[] = queue.sent.splice(0);
    let rounds = 0;
    while (pending.length > 0) {
      expect(++rounds).toBeLessThan(200);
      const batch = purgeBatch(pending.map((body, i) => ({ id: `c${rounds}-${i}`, body })));
      const step = await withServices(prefix, { PURGE_QUEUE: queue.asQueue() }, (s) =>
        processPurgeBatch(s, "edgecache-purge", batch.messages, options),
      );
      expect(step.acked).toBe(pending.length);
      deleted += step.patterns.deleted;
      pending = queue.sent.splice(0);
      if (pending.length === 0) expect(step.patterns.finished).toBe(1);
    }
    expect(rounds).toBeGreaterThan(0);
    // `${family}:0` went with the event's keys, every other one with the purge.
    expect(report.applied.removed + deleted).toBe(count);
    expect(await countLeft()).toBe(0);
    expect((await cache.get(keep))?.value).toBe("stays");
  });

  it("retries the whole batch and acks nothing when Redis fails during the apply", async () => {
    const token = stack.spareGatewayTokens.faults;
    const key = `down:${++seq}`;
    await cache.set(key, "still here");
    await gatewayControl("faults", {
      token,
      body: { failRate: 1, failMode: "status", failStatus: 503 },
    });
    const result = await consume(
      [
        { id: "r1", body: event({ keys: [key] }) },
        { id: "r2", body: event({ tags: ["down-tag"], versions: { [key]: 9 } }) },
        { id: "r3", body: event({ patterns: [`down:*`] }) },
      ],
      { UPSTASH_REDIS_REST_TOKEN: token },
    );
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m) => m.msgId).sort()).toEqual(["r1", "r2", "r3"]);
    // Nothing was applied: the entry is intact and no version was recorded.
    const state = await cache.inspect(key, key);
    expect(state.state).toBe("fresh");
    expect(state.version).toBeNull();
    expect((await gatewayControl("stats", { token })).requests).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- continuations and Queues limits

describe("queue consumer: continuations within the Queues limits and deadline", () => {
  /** Runs the consumer on `bodies` with `queue` as its producer; purges get 1 step of 10 keys. */
  const consumeWith = (queue: FakeQueue, bodies: unknown[], overrides: Partial<Env> = {}) => {
    const batch = purgeBatch(bodies.map((body, i) => ({ id: `m${i}`, body })));
    return withServices(prefix, { PURGE_QUEUE: queue.asQueue(), ...overrides }, (s) =>
      processPurgeBatch(s, "edgecache-purge", batch.messages, {
        patterns: { steps: 1, stepBudget: 10 },
      }),
    );
  };
  // A purge of 1 step of 10 keys must not finish in that step: a SCAN of a keyspace of a few
  // dozen keys (this file run alone) can, and then nothing is continued. 300 keys of our own
  // make every purge here need more than one step, whatever else the database holds.
  beforeAll(async () => {
    const filler = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`${prefix}:filler:${i}`, "x"]),
    );
    await redis.mset(filler);
    await Promise.all(Object.keys(filler).map((key) => redis.pexpire(key, 600_000)));
  });

  /** What POST /admin/invalidate {patterns, async: true} enqueues: 100 globs of ~400 characters. */
  const longGlobs = (tag: string, filler: string) =>
    Array.from({ length: 100 }, (_, i) => `${prefix}:${tag}:p${i}:${filler}*`);
  const sentEvents = (queue: FakeQueue) => queue.sent as InvalidationEvent[];

  async function insertOutboxRows(count: number): Promise<number[]> {
    const rows = await withDb((db) =>
      db
        .insert(cacheOutbox)
        .values(
          Array.from({ length: count }, () => ({
            event: { patterns: ["unused:*"], origin: "jobs-test" } as { [key: string]: JsonValue },
            prefix,
          })),
        )
        .returning({ id: cacheOutbox.id }),
    );
    return rows.map((r) => r.id);
  }

  it("splits continuations over sendBatch calls of at most 256 KB: 4 messages of 100 long globs are all acked", async () => {
    const queue = new FakeQueue();
    queue.limits = true;
    const globs = [0, 1, 2, 3].map((m) => longGlobs(`b${++seq}m${m}`, "x".repeat(380)));
    const report = await consumeWith(
      queue,
      globs.map((patterns) => event({ patterns })),
    );
    // About 80 KB of continuation per message: over 256 KB in one sendBatch before.
    expect(report.error).toBeUndefined();
    expect(report.acked).toBe(4);
    expect(queue.calls).toBeGreaterThanOrEqual(2);
    const continued = new Set(sentEvents(queue).flatMap((e) => e.patterns ?? []));
    expect(continued.size + report.patterns.finished).toBe(400);
  });

  it("counts every sendBatch call of a continuation whose last call fails in its subrequests", async () => {
    const token = stack.spareGatewayTokens.jobs;
    const queue = new FakeQueue();
    queue.limits = true;
    queue.failFrom = 2; // the first sendBatch goes through, the second fails
    const globs = [0, 1, 2, 3].map((m) => longGlobs(`f${++seq}m${m}`, "x".repeat(380)));
    // The scripts are loaded first, so no NOSCRIPT retry adds a request to the count.
    await consumeWith(new FakeQueue(), [event({})], { UPSTASH_REDIS_REST_TOKEN: token });
    await gatewayControl("reset", { token });
    const report = await consumeWith(
      queue,
      globs.map((patterns) => event({ patterns })),
      { UPSTASH_REDIS_REST_TOKEN: token },
    );
    const requests = Number((await gatewayControl("stats", { token })).requests);
    await gatewayControl("reset", { token });
    expect(report.error).toMatch(/not queued: queue went away at call 2/);
    expect(queue.calls).toBe(2);
    // Both calls were subrequests (0 of them counted before), as was every Redis request; the
    // heartbeat (one request) is the only one reported outside the batch's count.
    expect(report.subrequests).toBeGreaterThanOrEqual(requests - 1 + queue.calls);
  });

  it("splits one continuation over the 128 KB message limit into parts, and settles its row once all are queued", async () => {
    const queue = new FakeQueue();
    queue.limits = true;
    // 100 globs of about 1,000 bytes (é is 2 bytes): the message is under 128 KB, its
    // continuation (each glob in `patterns` and again in `cursors`) about twice that.
    const patterns = longGlobs(`s${++seq}`, "é".repeat(480));
    const [rowId] = await insertOutboxRows(1);
    if (!rowId) throw new Error("no outbox row");
    const body = event({ patterns, outboxIds: [rowId] });
    expect(new TextEncoder().encode(JSON.stringify(body)).byteLength).toBeLessThan(128_000);

    const report = await consumeWith(queue, [body]);
    expect(report.error).toBeUndefined();
    expect(report.acked).toBe(1);
    const parts = sentEvents(queue);
    expect(parts.length).toBeGreaterThanOrEqual(2);
    // Every unfinished purge is in exactly one part, with its cursor; no part carries the row.
    const carried = parts.flatMap((p) => p.patterns ?? []);
    expect(new Set(carried).size).toBe(carried.length);
    expect(carried.length + report.patterns.finished).toBe(100);
    for (const part of parts) {
      expect(part.outboxIds).toBeUndefined();
      expect(Object.keys(part.cursors ?? {}).sort()).toEqual([...(part.patterns ?? [])].sort());
    }
    // Handed over whole to the queue: the row is settled now (not left to a chain that would
    // never mark it, nor resumed from cursor 0 by a drain).
    const [row] = await withDb((db) =>
      db
        .select()
        .from(cacheOutbox)
        .where(inArray(cacheOutbox.id, [rowId])),
    );
    expect(row?.processedAt).toBeInstanceOf(Date);
  });

  it("carries every outbox row it marks continued: 1,200 rows with the same purge go in runs of 1,000", async () => {
    const queue = new FakeQueue();
    queue.limits = true;
    const ids = await insertOutboxRows(1200);
    const glob = `${prefix}:rows${++seq}:*`;
    const report = await consumeWith(queue, [
      event({ patterns: [glob], outboxIds: ids.slice(0, 600) }),
      event({ patterns: [glob], outboxIds: ids.slice(600) }),
    ]);
    expect(report.error).toBeUndefined();
    expect(report.acked).toBe(2);
    const events = sentEvents(queue);
    for (const e of events) expect(e.outboxIds?.length ?? 0).toBeLessThanOrEqual(1000);
    const carried = events.flatMap((e) => e.outboxIds ?? []);
    expect(carried.sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    const rows = await withDb((db) =>
      db.select().from(cacheOutbox).where(inArray(cacheOutbox.id, ids)),
    );
    expect(rows.filter((r) => r.continuedAt !== null)).toHaveLength(1200);
    expect(rows.filter((r) => r.processedAt !== null)).toHaveLength(0);
  });

  it("retries a message whose continuation the queue does not take within QUEUE_TIMEOUT_MS", async () => {
    const queue = new FakeQueue();
    queue.hang = true;
    const started = Date.now();
    const report = await within(
      5000,
      consumeWith(queue, [event({ patterns: [`${prefix}:hung${++seq}:*`] })], {
        QUEUE_TIMEOUT_MS: "300",
      }),
    );
    if (report === "no answer") throw new Error("the consumer never finished its batch");
    expect(Date.now() - started).toBeLessThan(300 + 2500);
    expect(queue.calls).toBe(1);
    expect(report.acked).toBe(0);
    expect(report.retried).toBe(1);
    expect(report.error).toMatch(/not queued: queue send: no answer within 300 ms/);
  });
});

describe("queue consumer: one subrequest budget per batch", () => {
  const budgetToken = stack.spareGatewayTokens.jobs;
  const redisRequests = async () =>
    Number((await gatewayControl("stats", { token: budgetToken })).requests);

  /** 50 messages, the 26th naming a tag whose key holds a hash (Redis refuses it: WRONGTYPE). */
  async function refusedBatch() {
    const tag = `budget-refused-${++seq}`;
    await redis.hset(`${prefix}:t:${tag}`, { not: "a counter" });
    const keys = Array.from({ length: 49 }, (_, i) => `budget:${seq}:${i}`);
    await Promise.all(keys.map((key) => cache.set(key, "old")));
    const messages = keys.map((key, i) => ({ id: `good${i}`, body: event({ keys: [key] }) }));
    messages.splice(25, 0, { id: "refused", body: event({ tags: [tag] }) });
    return { keys, batch: purgeBatch(messages) };
  }

  const run = async (subrequests?: number) => {
    const { keys, batch } = await refusedBatch();
    const queue = new FakeQueue();
    // The scripts are loaded first, so no NOSCRIPT retry adds a request to the count.
    await withServices(prefix, { UPSTASH_REDIS_REST_TOKEN: budgetToken }, (s) =>
      processPurgeBatch(s, "edgecache-purge", purgeBatch([{ id: "w", body: event({}) }]).messages),
    );
    await gatewayControl("reset", { token: budgetToken });
    const report = await withServices(
      prefix,
      { UPSTASH_REDIS_REST_TOKEN: budgetToken, PURGE_QUEUE: queue.asQueue() },
      (s) => processPurgeBatch(s, "edgecache-purge", batch.messages, { subrequests }),
    );
    const result = await getQueueResult(batch, createExecutionContext());
    return { keys, report, result, redis: await redisRequests(), sends: queue.calls };
  };

  afterEach(async () => {
    await gatewayControl("reset", { token: budgetToken });
  });

  it("isolates a refused message in a batch of 50 down to itself within PURGE_SUBREQUESTS, every subrequest counted", async () => {
    const { keys, report, result, redis: requests, sends } = await run();
    // Every other message applied and acked (six halvings; a fixed six settles stopped at three,
    // retrying the refused message's 6 neighbours with it on every delivery).
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["refused"]);
    expect(result.explicitAcks).toHaveLength(49);
    for (const key of keys) expect(await cache.get(key)).toBeNull();
    // The report counts what the gateway saw (the heartbeat included; the engine's telemetry
    // flush, at most one here, is kept back in the budget but not reported), within the budget.
    expect(requests + sends).toBeLessThanOrEqual(report.subrequests + 1);
    expect(report.subrequests + 1).toBeLessThanOrEqual(PURGE_SUBREQUESTS);
    expect(requests).toBeGreaterThanOrEqual(12);
  });

  it("counts every chunk of an apply Redis refuses part-way, and settles what fits (admin purges of 1,000 keys)", async () => {
    // 49 messages of 1,000 keys (10 apply requests together) and a refused tag, last: the
    // refusal comes in the 10th chunk. Counted as one request, the halves then spent 64.
    const tag = `budget-chunks-${++seq}`;
    await redis.hset(`${prefix}:t:${tag}`, { not: "a counter" });
    const messages = Array.from({ length: 49 }, (_, m) => ({
      id: `big${m}`,
      body: event({
        keys: Array.from({ length: 1000 }, (_, i) => `chunk:${seq}:${m}:${i}`),
        origin: "admin",
      }),
    }));
    messages.push({ id: "refused", body: event({ tags: [tag], origin: "admin" }) });
    await withServices(prefix, { UPSTASH_REDIS_REST_TOKEN: budgetToken }, (s) =>
      processPurgeBatch(s, "edgecache-purge", purgeBatch([{ id: "w", body: event({}) }]).messages),
    );
    await gatewayControl("reset", { token: budgetToken });
    const batch = purgeBatch(messages);
    const report = await withServices(prefix, { UPSTASH_REDIS_REST_TOKEN: budgetToken }, (s) =>
      processPurgeBatch(s, "edgecache-purge", batch.messages),
    );
    const result = await getQueueResult(batch, createExecutionContext());
    const requests = await redisRequests();
    expect(requests).toBeLessThanOrEqual(report.subrequests + 1);
    expect(report.subrequests + 1).toBeLessThanOrEqual(PURGE_SUBREQUESTS);
    expect(result.retryMessages.map((m) => m.msgId)).toContain("refused");
    expect(result.explicitAcks.length).toBeGreaterThanOrEqual(25);
    expect(result.explicitAcks.length + result.retryMessages.length).toBe(50);
  });

  it("retries what a smaller budget cannot isolate, spending no more than it", async () => {
    const { report, result, redis: requests } = await run(8);
    expect(report.subrequests).toBeLessThanOrEqual(8);
    expect(requests).toBeLessThanOrEqual(8);
    expect(report.error).toMatch(/subrequests ran out/);
    // Some halves were applied; the rest, the refused message among them, comes again.
    expect(result.explicitAcks.length).toBeGreaterThan(0);
    expect(result.retryMessages.map((m) => m.msgId)).toContain("refused");
    expect(result.explicitAcks.length + result.retryMessages.length).toBe(50);
  });
});

describe("retryDelaySeconds", () => {
  it("backs off exponentially and caps at a minute", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(retryDelaySeconds)).toEqual([2, 4, 8, 16, 32, 60, 60, 60]);
  });
});

// ---------------------------------------------------------------- warmer

interface TestUser {
  id: number;
  name: string;
  version: number;
}
interface TestProduct {
  id: number;
  sku: string;
  version: number;
}

const idOf = (stem: string) => {
  const re = new RegExp(`^${stem}:(\\d+)$`);
  return (key: string) => {
    const m = re.exec(key);
    return m ? Number(m[1]) : null;
  };
};

/** Test-only warmables over the seeded tables, shaped like the domain ones (versioned). */
const userWarmable: Warmable<TestUser> = {
  entity: "wuser",
  parse: idOf("wu"),
  async loadMany(db, ids) {
    const rows = await db
      .select({ id: users.id, name: users.name, version: users.version })
      .from(users)
      .where(inArray(users.id, [...ids]));
    return new Map(rows.map((r) => [r.id, r]));
  },
  key: (id) => `wu:${id}`,
  entry: (u) => ({ ttl: 60_000, versionKey: `wu:${u.id}`, versionOf: (x) => x.version }),
};

const productWarmable: Warmable<TestProduct> = {
  entity: "wproduct",
  parse: idOf("wp"),
  async loadMany(db, ids) {
    const rows = await db
      .select({ id: products.id, sku: products.sku, version: products.version })
      .from(products)
      .where(inArray(products.id, [...ids]));
    return new Map(rows.map((r) => [r.id, r]));
  },
  key: (id) => `wp:${id}`,
  entry: (p) => ({ ttl: 60_000, versionKey: `wp:${p.id}`, versionOf: (x) => x.version }),
};

/** Reads through getOrLoad with every read sampled, as the Worker's reads would over time. */
async function makeHot<T>(p: string, warmable: Warmable<T>, ids: readonly number[]) {
  const sampler = new EdgeCache({ redis, prefix: p, hotKeys: { sampleRate: 1 } });
  const rows = await withDb((db) => warmable.loadMany(db, ids));
  for (let round = 0; round < 3; round++) {
    await Promise.all(
      ids.map((id) => {
        const row = rows.get(id);
        if (row === undefined) throw new Error(`seeded row ${id} missing`);
        return sampler.getOrLoad(warmable.key(id), async () => row, warmable.entry(row));
      }),
    );
  }
}

describe("warmer", () => {
  const jobsToken = stack.spareGatewayTokens.jobs;
  const counted = { UPSTASH_REDIS_REST_TOKEN: jobsToken };
  const requests = async () =>
    Number((await gatewayControl("stats", { token: jobsToken })).requests);

  it("reads no freshness when no warmable claims a hot key (list pages): one request", async () => {
    const p = `${prefix}wl`;
    const sampler = new EdgeCache({ redis, prefix: p, hotKeys: { sampleRate: 1 } });
    for (let round = 0; round < 3; round++) {
      await sampler.getOrLoad(`products:list:all:0:20:${seq}`, async () => ({ items: [] }));
    }
    const warmables = [anyWarmable(userWarmable)];
    await withServices(p, counted, (s) => warmHotKeys(s, warmables)); // scripts loaded
    await gatewayControl("reset", { token: jobsToken });
    const report = await withServices(p, counted, (s) => warmHotKeys(s, warmables));
    expect(report).toMatchObject({ hot: 1, unmatched: 1, stale: 0, reloaded: 0 });
    // The hot-key read alone: a freshness read of keys nobody warms was one request per tick.
    expect(report.redisRequests).toBe(1);
    expect(await requests()).toBe(1);
    await gatewayControl("reset", { token: jobsToken });
  });

  it("reloads missing hot keys with one query per entity and one pipelined write", async () => {
    const p = `${prefix}w`;
    const local = new EdgeCache({ redis, prefix: p });
    const ids = [1, 2, 3, 4, 5];
    await makeHot(p, userWarmable, ids);
    const warmables = [anyWarmable(userWarmable)];

    // A first run loads the scripts on the server so the counted run is not paying for EVAL.
    await local.invalidate("wu:5");
    await withServices(p, counted, (s) => warmHotKeys(s, warmables));

    await local.invalidate("wu:1", "wu:2", "wu:3");
    await gatewayControl("reset", { token: jobsToken });
    const report = await withServices(p, counted, (s) => warmHotKeys(s, warmables));
    expect(report).toMatchObject({
      hot: 5,
      stale: 3,
      missing: 3,
      unmatched: 0,
      reloaded: 3,
      byEntity: { wuser: 3 },
      refused: 0,
      queries: 1,
      redisRequests: 3,
      stoppedEarly: null,
      errors: [],
    });
    // hotKeys, freshness, and the three write-throughs auto-pipelined into one request.
    expect(await requests()).toBe(3);

    const dbUsers = await withDb((db) => userWarmable.loadMany(db, [1, 2, 3]));
    for (const id of [1, 2, 3]) {
      const state = await local.inspect(`wu:${id}`, `wu:${id}`);
      expect(state.state).toBe("fresh");
      expect(state.entry?.value).toEqual(dbUsers.get(id));
      expect(state.entry?.version).toBe(dbUsers.get(id)?.version);
    }
  });

  it("stays within its subrequest budget and says what it left", async () => {
    const p = `${prefix}b`;
    const local = new EdgeCache({ redis, prefix: p });
    const userIds = [6, 7, 8, 9];
    const productIds = [11, 12, 13, 14, 15, 16];
    await makeHot(p, userWarmable, userIds);
    await makeHot(p, productWarmable, productIds);
    const warmables = [anyWarmable(userWarmable), anyWarmable(productWarmable)];
    const forget = () =>
      local.invalidate(...userIds.map((id) => `wu:${id}`), ...productIds.map((id) => `wp:${id}`));

    await forget();
    // Room for hotKeys + freshness only: each entity needs a query and a write.
    const starved = await withServices(p, counted, (s) => warmHotKeys(s, warmables, { budget: 3 }));
    expect(starved).toMatchObject({ hot: 10, stale: 10, reloaded: 0, skipped: 10, queries: 0 });
    expect(starved.stoppedEarly).toMatch(/budget/);

    await gatewayControl("reset", { token: jobsToken });
    const partial = await withServices(p, counted, (s) => warmHotKeys(s, warmables, { budget: 4 }));
    // The biggest entity first; the other waits for the next run.
    expect(partial).toMatchObject({
      reloaded: 6,
      byEntity: { wproduct: 6 },
      skipped: 4,
      queries: 1,
      redisRequests: 3,
    });
    expect(partial.stoppedEarly).toMatch(/wuser \(4 keys\)/);
    expect(partial.queries + partial.redisRequests).toBeLessThanOrEqual(4);
    expect(await requests()).toBe(3);
    expect((await local.inspect("wu:6")).state).toBe("absent");
    expect((await local.inspect("wp:11", "wp:11")).state).toBe("fresh");
  });

  it("counts the keys of an entity whose query failed as failed, never as gone from Postgres", async () => {
    const p = `${prefix}x`;
    const local = new EdgeCache({ redis, prefix: p });
    await makeHot(p, userWarmable, [22, 23]);
    await makeHot(p, productWarmable, [24]);
    await local.invalidate("wu:22", "wu:23", "wp:24");
    // The users' query fails (as when Postgres refuses connections); the products' works.
    const failing: Warmable<TestUser> = {
      ...userWarmable,
      async loadMany() {
        throw new Error("Postgres connect failed");
      },
    };
    const report = await withServices(p, counted, (s) =>
      warmHotKeys(s, [anyWarmable(failing), anyWarmable(productWarmable)]),
    );
    expect(report).toMatchObject({ stale: 3, reloaded: 1, failed: 2, notFound: 0, queries: 2 });
    expect(report.errors).toEqual([
      expect.stringMatching(/^wuser loadMany: .*Postgres connect failed/),
    ]);
    expect(describeWarm(report)).toContain("2 not read (query failed)");
    expect(describeWarm(report)).not.toContain("gone from Postgres");
  });

  it("leaves entries that are still fresh alone", async () => {
    const p = `${prefix}f`;
    await makeHot(p, userWarmable, [20, 21]);
    const report = await withServices(p, counted, (s) =>
      warmHotKeys(s, [anyWarmable(userWarmable)]),
    );
    expect(report).toMatchObject({ hot: 2, stale: 0, reloaded: 0, queries: 0, redisRequests: 2 });
  });
});

// ---------------------------------------------------------------- the cron tick

describe("scheduled handler", () => {
  beforeAll(async () => {
    await redis.del(`${prefix}:job:warm`);
  });

  it("drains, warms and leaves its heartbeat in Redis", async () => {
    const scheduledTime = Date.UTC(2026, 10, 22, 12, 0, 0);
    await runScheduled(testEnv(prefix), scheduledTime);
    const beat = await redis.get<{
      cron: string;
      scheduledTime: number;
      at: number;
      drain: { pending: number };
      warm: { hot: number };
      lag: { pending: number; oldestAgeMs: number | null };
      subrequests: number;
    }>(`${prefix}:job:warm`);
    expect(beat).toMatchObject({ cron: "*/5 * * * *", scheduledTime });
    expect(beat?.at).toBeGreaterThan(scheduledTime);
    expect(typeof beat?.drain.pending).toBe("number");
    expect(typeof beat?.warm.hot).toBe("number");
    expect(typeof beat?.lag.pending).toBe("number");
    expect(beat?.subrequests).toBeLessThanOrEqual(40);
  });
});
