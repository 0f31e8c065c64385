import { createExecutionContext, getQueueResult } from "cloudflare:test";
import { and, eq, inArray, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { cacheOutbox, type JsonValue, products } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import type { Env } from "../../src/config/env";
import type { InvalidationEvent } from "../../src/domain/events";
import { MAX_OUTBOX_ATTEMPTS, outboxLag, QUEUED_GRACE_S } from "../../src/domain/outbox";
import { warmables } from "../../src/domain/warmables";
import { processPurgeBatch } from "../../src/jobs/purge";
import { markerKey, recoveryDrain, resetRecoveryState } from "../../src/jobs/recovery";
import { Budget, drainOutbox, runScheduled } from "../../src/jobs/warm";
import { createServices } from "../../src/runtime/services";
import { apiFor } from "./api";
import { insertCategory, withDb } from "./db";
import { FakeQueue, purgeBatch, testEnv, withServices } from "./helpers";
import { gatewayControl, scanKeys, stack, testRedis } from "./stack";

/**
 * The outbox drain against real Postgres and the real gateway: rows are scoped by prefix,
 * bad rows are parked without blocking good ones, a drain loops past one batch while its
 * budget lasts, a row is settled only when its last pattern purge ends, and after a Redis
 * outage the next request that reaches Redis drains the outbox (no cron).
 */
/** The `name` of a cached value or response body. */
const nameIn = (value: unknown) => (value as { name?: string } | null | undefined)?.name;

const run = Date.now().toString(36);
const redis = testRedis();
const token = stack.spareGatewayTokens.outbox;

let seq = 0;
const newPrefix = () => `od${run}${++seq}`;

type Change = Record<string, unknown>;

/** Inserts outbox rows as writers of `prefix` would have (aged, so any grace period passed). */
async function insertRows(prefix: string, events: Change[]): Promise<number[]> {
  const ids: number[] = [];
  await withDb(async (db) => {
    for (let start = 0; start < events.length; start += 1000) {
      const rows = await db
        .insert(cacheOutbox)
        .values(
          events.slice(start, start + 1000).map((event) => ({
            event: { origin: "outbox-drain-test", ...event } as { [key: string]: JsonValue },
            prefix,
            createdAt: sql`now() - interval '1 minute'`,
          })),
        )
        .returning({ id: cacheOutbox.id });
      ids.push(...rows.map((r) => r.id));
    }
  });
  return ids;
}

async function rowsOf(ids: number[]) {
  const rows = await withDb((db) =>
    db.select().from(cacheOutbox).where(inArray(cacheOutbox.id, ids)),
  );
  return new Map(rows.map((r) => [r.id, r]));
}

const drain = (prefix: string, options = {}, budget?: Budget) =>
  withServices(prefix, {}, (s) => drainOutbox(s, { olderThanMs: 0, ...options }, budget));

/** A drain (a cron tick's) through the faulted token, handing what it cannot apply to `queue`. */
const drainFaulted = (prefix: string, queue: FakeQueue) =>
  withServices(prefix, { UPSTASH_REDIS_REST_TOKEN: token, PURGE_QUEUE: queue.asQueue() }, (s) =>
    drainOutbox(s, { olderThanMs: 0 }),
  );

describe("outbox drain", () => {
  it("applies only rows of its own prefix, under that prefix", async () => {
    const mine = newPrefix();
    const theirs = newPrefix();
    const a = new EdgeCache({ redis, prefix: mine });
    const b = new EdgeCache({ redis, prefix: theirs });
    await a.set("shared:1", "mine");
    await b.set("shared:1", "theirs");
    const [mineId] = await insertRows(mine, [{ keys: ["shared:1"] }]);
    const [theirsId] = await insertRows(theirs, [{ keys: ["shared:1"] }]);
    if (!mineId || !theirsId) throw new Error("rows not inserted");

    const report = await drain(mine);
    expect(report.applied).toBe(1);
    expect(report.stoppedBy).toBe("caught-up");
    expect(await a.get("shared:1")).toBeNull();
    // The other deployment's entry and row are untouched.
    expect((await b.get("shared:1"))?.value).toBe("theirs");
    let rows = await rowsOf([mineId, theirsId]);
    expect(rows.get(mineId)?.processedAt).toBeInstanceOf(Date);
    expect(rows.get(theirsId)?.processedAt).toBeNull();

    // Its own drain settles it.
    expect((await drain(theirs)).applied).toBe(1);
    expect(await b.get("shared:1")).toBeNull();
    rows = await rowsOf([theirsId]);
    expect(rows.get(theirsId)?.processedAt).toBeInstanceOf(Date);
  });

  it("walks past 600 malformed rows to the good one behind them, and parks them after 10 drains", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    // More bad rows than a batch: before, every drain re-read the same oldest 500 and stalled.
    const bad = await insertRows(
      prefix,
      Array.from({ length: 600 }, (_, i) => ({ keys: [`bad key ${i}`] })),
    );
    await cache.set("behind:1", "old");
    const [good] = await insertRows(prefix, [{ keys: ["behind:1"] }]);
    if (!good) throw new Error("no good row");

    const first = await drain(prefix, { batch: 500 });
    expect(first.invalid).toBe(600);
    expect(first.applied).toBe(1);
    expect(first.rounds).toBeGreaterThanOrEqual(2);
    expect(await cache.get("behind:1")).toBeNull();
    const afterFirst = await rowsOf([good, ...bad.slice(0, 3)]);
    expect(afterFirst.get(good)?.processedAt).toBeInstanceOf(Date);
    expect(afterFirst.get(bad[0] ?? 0)?.attempts).toBe(1);
    expect(afterFirst.get(bad[0] ?? 0)?.lastError).toMatch(/invalid event/);

    let parked = 0;
    for (let i = 1; i < MAX_OUTBOX_ATTEMPTS; i++) parked += (await drain(prefix)).parked;
    expect(parked).toBe(600);
    // Parked: no drain selects them any more, the lag counts them as stuck.
    const idle = await drain(prefix);
    expect(idle.pending).toBe(0);
    expect(idle.rounds).toBe(1);
    const lag = await withServices(prefix, {}, (s) => outboxLag(s.db, prefix));
    expect(lag).toMatchObject({ pending: 600, stuck: 600 });
    const rows = await rowsOf(bad);
    expect([...rows.values()].every((r) => r.attempts === MAX_OUTBOX_ATTEMPTS)).toBe(true);
    expect([...rows.values()].every((r) => r.processedAt === null)).toBe(true);
  });

  it("records each malformed row's own reason in last_error, not its neighbour's", async () => {
    const prefix = newPrefix();
    const [notAList, badName, good] = await insertRows(prefix, [
      { keys: "not-a-list" },
      { keys: ["name with spaces"] },
      { keys: ["fine:1"] },
    ]);
    if (!notAList || !badName || !good) throw new Error("rows not inserted");
    const report = await drain(prefix);
    expect(report.invalid).toBe(2);
    expect(report.applied).toBe(1);
    const rows = await rowsOf([notAList, badName]);
    expect(rows.get(notAList)?.attempts).toBe(1);
    expect(rows.get(badName)?.attempts).toBe(1);
    expect(rows.get(notAList)?.lastError).toMatch(/^invalid event: keys: .*array/);
    expect(rows.get(badName)?.lastError).toMatch(/^invalid event: .*name with spaces/);
    expect(rows.get(badName)?.lastError).not.toMatch(/array/);
  });

  it("isolates a row Redis refuses (while it answers) by halving; only that row is charged", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    // A tag counter that is a hash: INCR-like bumps of it fail inside the apply script.
    await redis.hset(`${prefix}:t:broken`, { x: 1 });
    await Promise.all(Array.from({ length: 8 }, (_, i) => cache.set(`iso:${i}`, i)));
    const ids = await insertRows(prefix, [
      ...Array.from({ length: 5 }, (_, i) => ({ keys: [`iso:${i}`] })),
      { tags: ["broken"] },
      ...Array.from({ length: 3 }, (_, i) => ({ keys: [`iso:${i + 5}`] })),
    ]);
    const report = await drain(prefix);
    expect(report.applied).toBe(8);
    expect(report.queued).toBe(0);
    for (let i = 0; i < 8; i++) expect(await cache.get(`iso:${i}`)).toBeNull();
    const rows = await rowsOf(ids);
    const broken = rows.get(ids[5] ?? 0);
    expect(broken?.processedAt).toBeNull();
    expect(broken?.attempts).toBe(1);
    expect(broken?.lastError).toMatch(/apply failed/);
    expect(
      [...rows.values()].filter((r) => r.id !== broken?.id).every((r) => r.attempts === 0),
    ).toBe(true);
  });

  it("stops halving at its deadline: the rows it did not reach stay pending, uncharged", async () => {
    const prefix = newPrefix();
    await redis.hset(`${prefix}:t:broken`, { x: 1 });
    const ids = await insertRows(prefix, [
      ...Array.from({ length: 7 }, (_, i) => ({ keys: [`late:${i}`] })),
      { tags: ["broken"] },
    ]);
    // No time at all: the first round runs (a drain always makes one), its apply fails on the
    // broken row, and no halving starts past the deadline.
    const report = await drain(prefix, { timeBudgetMs: 0 });
    expect(report.rounds).toBe(1);
    expect(report.applied).toBe(0);
    expect(report.error).toMatch(/time ran out while isolating/);
    const rows = await rowsOf(ids);
    expect([...rows.values()].every((r) => r.processedAt === null && r.attempts === 0)).toBe(true);
    // With time, the same rows are sorted out as before.
    expect((await drain(prefix)).applied).toBe(7);
  });

  it("a Redis that fails after answering once charges no row: the error, not a PING, tells an outage", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix }); // the main token: never faulted
    await Promise.all([0, 1, 2, 3].map((i) => cache.set(`flap:${i}`, "old")));
    const ids = await insertRows(
      prefix,
      [0, 1, 2, 3].map((i) => ({ keys: [`flap:${i}`] })),
    );
    const queue = new FakeQueue();
    // Flapping: the first apply fails; anything sent next (the PING the drain used to send)
    // gets through; then Redis fails again for good.
    await gatewayControl("faults", { token, body: { failCount: 1 } });
    const s = createServices(
      testEnv(prefix, { UPSTASH_REDIS_REST_TOKEN: token, PURGE_QUEUE: queue.asQueue() }),
    );
    const ping = s.redis.ping.bind(s.redis);
    s.redis.ping = (async () => {
      const pong = await ping();
      await gatewayControl("faults", { token, body: { failRate: 1 } });
      return pong;
    }) as typeof s.redis.ping;
    let report: Awaited<ReturnType<typeof drainOutbox>>;
    try {
      report = await drainOutbox(s, { olderThanMs: 0 });
    } finally {
      await gatewayControl("reset", { token });
      await s.dispose();
    }
    expect(report.stoppedBy).toBe("redis-down");
    expect(report.queued).toBe(4);
    expect(queue.sent).toHaveLength(4);
    // Nothing charged (ten such drains used to park every good row), nothing marked.
    for (const row of (await rowsOf(ids)).values()) {
      expect(row.attempts).toBe(0);
      expect(row.processedAt).toBeNull();
    }
    expect((await drain(prefix)).applied).toBe(4);
    expect(await cache.get("flap:0")).toBeNull();
  });

  it("an Upstash quota error is an outage: ten drains over an exhausted daily limit charge no row", async () => {
    // Found by an operator audit: Upstash's limit errors start with `ERR` like a script error,
    // so the drain read them as bad rows, halved down to single rows and charged each an
    // attempt per tick: ten ticks parked every pending invalidation for good.
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix }); // the main token: never faulted
    await Promise.all([0, 1, 2, 3, 4, 5].map((i) => cache.set(`quota:${i}`, "old")));
    const ids = await insertRows(
      prefix,
      [0, 1, 2, 3, 4, 5].map((i) => ({ keys: [`quota:${i}`] })),
    );
    await gatewayControl("faults", {
      token,
      body: {
        failRate: 1,
        failStatus: 400,
        failError: "ERR max daily request limit exceeded. Limit: 10000, Usage: 10000",
      },
    });
    try {
      for (let tick = 0; tick < 10; tick++) {
        expect((await drainFaulted(prefix, new FakeQueue())).stoppedBy).toBe("redis-down");
      }
    } finally {
      await gatewayControl("reset", { token });
    }
    for (const row of (await rowsOf(ids)).values()) {
      expect(row.attempts).toBe(0);
      expect(row.processedAt).toBeNull();
    }
    // The quota back: every row applies.
    expect((await drain(prefix)).applied).toBe(6);
    expect(await cache.get("quota:0")).toBeNull();
  });

  it("in an outage, hands each row to the queue once per QUEUED_GRACE_S, not on every tick", async () => {
    // Found by an operator audit: every cron tick of an outage sent the same rows again (3,000
    // messages for 1,000 rows in three ticks), each retried for a minute and dead-lettered:
    // an hour's outage buried the dead-letter queue under duplicates.
    const prefix = newPrefix();
    const ids = await insertRows(
      prefix,
      [0, 1, 2, 3, 4].map((i) => ({ keys: [`queued:${i}`] })),
    );
    const queue = new FakeQueue();
    const tick = () => drainFaulted(prefix, queue);
    await gatewayControl("faults", { token, body: { failRate: 1 } });
    try {
      const first = await tick();
      expect(first.stoppedBy).toBe("redis-down");
      expect(first.queued).toBe(5);
      for (let i = 0; i < 2; i++) {
        const again = await tick();
        expect(again.queued).toBe(0);
        expect(again.error).toMatch(/5 already with it/);
      }
      expect(queue.sent).toHaveLength(5);
      // Past the grace (the queue's retries are over), the next tick of the outage hands them again.
      await withDb((db) =>
        db
          .update(cacheOutbox)
          .set({ queuedAt: sql`now() - make_interval(secs => ${QUEUED_GRACE_S + 1})` })
          .where(inArray(cacheOutbox.id, ids)),
      );
      expect((await tick()).queued).toBe(5);
      expect(queue.sent).toHaveLength(10);
    } finally {
      await gatewayControl("reset", { token });
    }
    // Attempts never charged; Redis back, every row applies.
    for (const row of (await rowsOf(ids)).values()) expect(row.attempts).toBe(0);
    expect((await drain(prefix)).applied).toBe(5);
  });

  it("counts every sendBatch call of a hand-over that fails part-way in its budget", async () => {
    // 150 rows go to the queue in two sendBatch calls (at most 100 messages each). A queue that
    // refuses the second: both calls were subrequests (none was counted before).
    const prefix = newPrefix();
    await insertRows(
      prefix,
      Array.from({ length: 150 }, (_, i) => ({ keys: [`handover:${i}`] })),
    );
    const spentWith = async (failFrom: number) => {
      const queue = new FakeQueue();
      queue.failFrom = failFrom;
      const budget = new Budget(40);
      const report = await withServices(
        prefix,
        { UPSTASH_REDIS_REST_TOKEN: token, PURGE_QUEUE: queue.asQueue() },
        (s) => drainOutbox(s, { olderThanMs: 0 }, budget),
      );
      expect(report.stoppedBy).toBe("redis-down");
      expect(report.queued).toBe(0); // refused: the rows stay pending for the next tick
      expect(queue.calls).toBe(failFrom);
      return budget.used;
    };
    await gatewayControl("faults", { token, body: { failRate: 1 } });
    try {
      const first = await spentWith(1);
      expect(await spentWith(2)).toBe(first + 1);
    } finally {
      await gatewayControl("reset", { token });
    }
  });

  it("loops past one batch while its budget lasts, and stops when the subrequests run out", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    await Promise.all(Array.from({ length: 50 }, (_, i) => cache.set(`loop:${i}`, i)));
    const ids = await insertRows(
      prefix,
      Array.from({ length: 2500 }, (_, i) => ({ keys: [`loop:${i % 50}`], tags: [`loop-${i}`] })),
    );

    // 10 subrequests: three rounds of 500 (SELECT + apply + UPDATE each), then it stops.
    const limited = await drain(prefix, { batch: 500 }, new Budget(10));
    expect(limited.rounds).toBe(3);
    expect(limited.applied).toBe(1500);
    expect(limited.stoppedBy).toBe("subrequests");
    expect(limited.redisRequests + limited.queries).toBeLessThanOrEqual(10);

    // The cron's budget (40, less the warmer's reserve) drains the rest in one tick.
    const rest = await drain(prefix, { batch: 500, reserve: 10 }, new Budget(40));
    expect(rest.applied).toBe(1000);
    expect(rest.stoppedBy).toBe("caught-up");
    const rows = await rowsOf(ids);
    expect([...rows.values()].every((r) => r.processedAt instanceof Date)).toBe(true);
    for (let i = 0; i < 50; i += 7) expect(await cache.get(`loop:${i}`)).toBeNull();
  });

  it("applies rows of large admin purges within its budget: a round takes the oldest rows whose apply fits", async () => {
    // 110 rows of 1,000 keys (an apply request per 5,000 names): one round of all of them
    // was 22 requests charged after the fact, past a cron tick's 40 with the rest of the tick.
    const prefix = newPrefix();
    const ids = await insertRows(
      prefix,
      Array.from({ length: 110 }, (_, m) => ({
        keys: Array.from({ length: 1000 }, (_, i) => `big:${m}:${i}`),
        origin: "admin",
      })),
    );
    await gatewayControl("reset", { token });
    const budget = new Budget(12);
    const report = await withServices(prefix, { UPSTASH_REDIS_REST_TOKEN: token }, (s) =>
      drainOutbox(s, { olderThanMs: 0 }, budget),
    );
    const requests = Number((await gatewayControl("stats", { token })).requests);
    expect(budget.used).toBeLessThanOrEqual(12);
    expect(requests).toBeLessThanOrEqual(report.redisRequests);
    expect(report.stoppedBy).toBe("subrequests");
    expect(report.applied).toBeGreaterThan(0);
    // The oldest rows first; the rest stay pending, whole, for the next drain.
    const rows = await rowsOf(ids);
    const done = ids.filter((id) => rows.get(id)?.processedAt instanceof Date);
    expect(done).toEqual(ids.slice(0, done.length));
    const rest = await drain(prefix);
    expect(rest.applied).toBe(110 - done.length);
  });

  it("a recovery drain out of budget leaves the marker for other isolates; one that catches up clears it", async () => {
    const prefix = newPrefix();
    // More than one recovery drain's 20 subrequests cover (about 6 rounds of 500).
    await insertRows(
      prefix,
      Array.from({ length: 4000 }, (_, i) => ({ keys: [`marker:${i % 50}`] })),
    );
    const first = await withServices(prefix, {}, (s) => recoveryDrain(s, false));
    expect(first.stoppedBy).toBe("subrequests");
    expect(first.applied).toBeLessThan(4000);
    expect(await redis.get(markerKey(prefix))).not.toBeNull();

    const second = await withServices(prefix, {}, (s) => recoveryDrain(s, false));
    expect(second.stoppedBy).toBe("caught-up");
    expect(first.applied + second.applied).toBe(4000);
    expect(await redis.get(markerKey(prefix))).toBeNull();
  });
});

describe("recovery drains of many isolates at once", () => {
  it("one drains, the others find it busy: each row is applied once, not once per isolate", async () => {
    const prefix = newPrefix();
    const rows = 1500;
    const ids = await insertRows(
      prefix,
      Array.from({ length: rows }, (_, i) => ({
        keys: [`herd:${i}`],
        tags: [`herd-tag:${i % 3}`],
      })),
    );
    // Eight isolates back from an outage, each with its own services, start their drains together.
    const reports = await Promise.all(
      Array.from({ length: 8 }, () => withServices(prefix, {}, (s) => recoveryDrain(s, true))),
    );
    const applied = reports.reduce((n, r) => n + r.applied, 0);
    // Before the lock: 10,000 rows applied for 1,500, each apply bumping the tags again.
    expect(applied).toBe(rows);
    expect(reports.filter((r) => r.stoppedBy === "busy")).toHaveLength(7);
    expect(reports.filter((r) => r.stoppedBy === "caught-up")).toHaveLength(1);
    const marked = await rowsOf(ids);
    expect([...marked.values()].every((r) => r.processedAt instanceof Date)).toBe(true);
    // The lock is given back, and the marker cleared by the drain that caught up.
    expect(await redis.exists(`${prefix}:outbox:draining`)).toBe(0);
    expect(await redis.get(markerKey(prefix))).toBeNull();
  });

  it("a lock whose drainer died expires: a later drain of the prefix goes ahead", async () => {
    const prefix = newPrefix();
    await insertRows(prefix, [{ keys: ["orphan:1"] }]);
    await redis.set(`${prefix}:outbox:draining`, "a dead isolate's", { px: 300 });
    const blocked = await withServices(prefix, {}, (s) => recoveryDrain(s, false));
    expect(blocked.stoppedBy).toBe("busy");
    await new Promise((resolve) => setTimeout(resolve, 400));
    const later = await withServices(prefix, {}, (s) => recoveryDrain(s, false));
    expect(later).toMatchObject({ stoppedBy: "caught-up", applied: 1 });
  });
});

describe("pattern purges of one outbox row", () => {
  it("a row whose purge continues on the queue is left to that chain: later drains start no second one", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    await Promise.all(Array.from({ length: 300 }, (_, i) => cache.set(`fam:${i}`, i)));
    const [rowId] = await insertRows(prefix, [{ patterns: ["fam:*"] }]);
    const queue = new FakeQueue();
    const options = { olderThanMs: 0, patterns: { steps: 1, stepBudget: 50 } };
    const reports = [];
    for (let i = 0; i < 3; i++) {
      reports.push(
        await withServices(prefix, { PURGE_QUEUE: queue.asQueue() }, (s) =>
          drainOutbox(s, options),
        ),
      );
    }
    expect(reports.map((r) => r.patternsContinued)).toEqual([1, 0, 0]);
    expect(reports.map((r) => r.pending)).toEqual([1, 0, 0]);
    expect(queue.sent).toHaveLength(1); // one chain, not one per drain
    const row = (await rowsOf([rowId ?? 0])).get(rowId ?? 0);
    expect(row?.processedAt).toBeNull(); // the chain marks it when its last purge ends
    expect(row?.continuedAt).not.toBeNull();
  });

  it("a round whose purge continues keeps the reserve it was given (the warmer's subrequests)", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    await Promise.all(Array.from({ length: 300 }, (_, i) => cache.set(`res:${i}`, i)));
    await insertRows(prefix, [{ keys: ["res:0"], patterns: ["res:*"] }]);
    const queue = new FakeQueue();
    // 10 subrequests, 3 of them the warmer's: the SELECT, then the settle (apply, pattern steps,
    // the continuation, markContinued). Steps used to be given all but 2 of what was left, and
    // the round ended inside the reserve.
    const budget = new Budget(10);
    const report = await withServices(prefix, { PURGE_QUEUE: queue.asQueue() }, (s) =>
      drainOutbox(
        s,
        { olderThanMs: 0, reserve: 3, patterns: { steps: 20, stepBudget: 10 } },
        budget,
      ),
    );
    expect(report.patternsContinued).toBe(1);
    expect(budget.left).toBeGreaterThanOrEqual(3);
  });

  it("settle the row only when the last of its purges ends", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    const families = [`fa${run}`, `fb${run}`];
    for (const family of families) {
      await Promise.all(Array.from({ length: 1200 }, (_, i) => cache.set(`${family}:${i}`, i)));
    }
    const globs = families.map((f) => `${f}:*`);
    const [rowId] = await insertRows(prefix, [{ patterns: globs }]);
    if (!rowId) throw new Error("no row");
    const queue = new FakeQueue();
    const options = { patterns: { steps: 2, stepBudget: 500 } };
    const consume = async (bodies: unknown[]) => {
      const batch = purgeBatch(bodies.map((body, i) => ({ id: `m${i}`, body })));
      const ctx = createExecutionContext();
      const report = await withServices(prefix, { PURGE_QUEUE: queue.asQueue() }, (s) =>
        processPurgeBatch(s, "edgecache-purge", batch.messages, options),
      );
      expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(bodies.length);
      return report;
    };
    const processed = async () => (await rowsOf([rowId])).get(rowId)?.processedAt ?? null;

    let pending: unknown[] = [{ patterns: globs, origin: "t", at: Date.now(), outboxIds: [rowId] }];
    let rounds = 0;
    let sawBothOpen = false;
    while (pending.length > 0) {
      expect(++rounds).toBeLessThan(300);
      await consume(pending);
      pending = queue.sent.splice(0);
      // One continuation per row, however many of its purges are unfinished.
      expect(pending.length).toBeLessThanOrEqual(1);
      const next = pending[0] as InvalidationEvent | undefined;
      if (next) {
        expect(next.outboxIds).toEqual([rowId]);
        if (next.patterns?.length === 2) sawBothOpen = true;
        // Not settled while any purge is still running.
        expect(await processed()).toBeNull();
      }
    }
    expect(sawBothOpen).toBe(true);
    expect(await processed()).toBeInstanceOf(Date);
    for (const family of families) {
      let left = 0;
      for await (const keys of scanKeys(redis, `${prefix}:e:${family}:*`, 1000)) {
        left += keys.length;
      }
      expect(left).toBe(0);
    }
  });
});

// ---------------------------------------------------------------- recovery after an outage

describe("after a Redis outage", () => {
  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  const faults = (on: boolean) =>
    on
      ? gatewayControl("faults", {
          token,
          body: { failRate: 1, failMode: "status", failStatus: 503 },
        })
      : gatewayControl("reset", { token });

  async function newProduct(prefix: string): Promise<number> {
    const categoryId = await insertCategory({ slug: `od-${prefix}`, name: "Outbox drain" });
    return withDb(async (db) => {
      const [row] = await db
        .insert(products)
        .values({ sku: `OD-${prefix}`, name: "old name", categoryId, priceCents: 100 })
        .returning({ id: products.id });
      if (!row) throw new Error("no product");
      return row.id;
    });
  }

  it("the next request that reaches Redis drains the outbox: a read right after sees the write", async () => {
    const prefix = newPrefix();
    resetRecoveryState(prefix);
    const refusing = new FakeQueue();
    refusing.fail = new Error("queue unavailable (test)");
    const env = { UPSTASH_REDIS_REST_TOKEN: token, PURGE_QUEUE: refusing.asQueue() };
    const api = apiFor(prefix, { env });
    const id = await newProduct(prefix);
    expect((await api("GET", `/products/${id}`)).headers.get("x-cache")).toBe("MISS");
    expect((await api("GET", `/products/${id}`)).headers.get("x-cache")).toBe("HIT");

    await faults(true);
    const patch = await api("PATCH", `/products/${id}`, { body: { name: "new name" } });
    expect(patch.status).toBe(200);
    // Redis and the queue both failed: the event waits in the outbox, the old entry in Redis.
    const cache = new EdgeCache({ redis, prefix });
    const entry = await cache.inspect(`product:${id}`, `product:${id}`);
    expect(nameIn(entry.entry?.value)).toBe("old name");
    expect(entry.state).toBe("fresh");
    const bypass = await api<{ name: string }>("GET", `/products/${id}`);
    expect(bypass.headers.get("x-cache")).toBe("BYPASS");

    await faults(false);
    // The first request to reach Redis still finds the old entry (the window), and drains in
    // its waitUntil; api() waits for that, as the next request would find it done.
    const first = await api<{ name: string }>("GET", `/products/${id}`);
    expect(first.headers.get("x-cache")).toBe("HIT");
    expect(first.body.name).toBe("old name");
    const after = await api<{ name: string }>("GET", `/products/${id}`);
    expect(after.body.name).toBe("new name");
    expect(after.headers.get("x-cache")).toBe("MISS");
    const [row] = await withDb((db) =>
      db
        .select({ processedAt: cacheOutbox.processedAt })
        .from(cacheOutbox)
        .where(
          and(
            eq(cacheOutbox.prefix, prefix),
            sql`${cacheOutbox.event}->'keys' @> ${JSON.stringify([`product:${id}`])}::jsonb`,
          ),
        ),
    );
    expect(row?.processedAt).toBeInstanceOf(Date);
    // Caught up: the marker other isolates would read is gone.
    expect(await redis.get(markerKey(prefix))).toBeNull();
  });

  it("an isolate that saw no fault drains when the Redis-side marker says there is work", async () => {
    const prefix = newPrefix();
    const cache = new EdgeCache({ redis, prefix });
    await cache.set("marker:1", "old");
    await insertRows(prefix, [{ keys: ["marker:1"] }]);
    await redis.set(markerKey(prefix), Date.now());
    // A fresh isolate: no flag, never checked the marker.
    resetRecoveryState(prefix);
    const api = apiFor(prefix);
    await api("GET", "/categories");
    expect(await cache.get("marker:1")).toBeNull();
    expect(await redis.get(markerKey(prefix))).toBeNull();
  });
});

describe("outbox retention (OUTBOX_RETENTION_HOURS)", () => {
  const tick = (prefix: string, env: Partial<Env> = {}) =>
    withServices(prefix, env, (s) =>
      runScheduled(s, { cron: "*/5 * * * *", scheduledTime: Date.now() }, warmables),
    );
  const age = (ids: number[], set: Record<string, unknown>) =>
    withDb((db) => db.update(cacheOutbox).set(set).where(inArray(cacheOutbox.id, ids)));

  /** Rows of every kind a tick must tell apart, `hours` of retention past the old ones. */
  async function rowsOfEveryKind() {
    const prefix = newPrefix();
    const [oldApplied, recentApplied, oldPending, parked] = await insertRows(prefix, [
      { keys: ["retention:old-applied"] },
      { keys: ["retention:recent-applied"] },
      { keys: ["retention:old-pending"] },
      { keys: ["retention:parked"] },
    ]);
    const [theirs] = await insertRows(newPrefix(), [{ keys: ["retention:theirs"] }]);
    if (!oldApplied || !recentApplied || !oldPending || !parked || !theirs) {
      throw new Error("insert returned no ids");
    }
    await age([oldApplied, theirs], { processedAt: sql`now() - interval '200 hours'` });
    await age([recentApplied], { processedAt: sql`now() - interval '100 hours'` });
    await age([oldPending], { createdAt: sql`now() - interval '300 hours'` });
    await age([parked], {
      createdAt: sql`now() - interval '300 hours'`,
      attempts: MAX_OUTBOX_ATTEMPTS,
      lastError: "parked for the test",
    });
    return { prefix, oldApplied, recentApplied, oldPending, parked, theirs };
  }

  it("a tick deletes its prefix's rows applied more than the retention ago, in its lag statement, and nothing else", async () => {
    const r = await rowsOfEveryKind();
    const report = await tick(r.prefix); // the default: 168 hours
    expect(report.lag?.pruned).toBe(1);
    const left = await rowsOf([r.oldApplied, r.recentApplied, r.oldPending, r.parked, r.theirs]);
    expect(left.has(r.oldApplied)).toBe(false);
    // Applied 100 h ago (inside the retention), pending (the drain applied it just now), parked,
    // and another deployment's row applied 200 h ago: all kept.
    expect([...left.keys()].sort()).toEqual(
      [r.recentApplied, r.oldPending, r.parked, r.theirs].sort(),
    );
    expect(left.get(r.parked)?.processedAt).toBeNull();
    // A second tick finds nothing more to delete.
    expect((await tick(r.prefix)).lag?.pruned).toBe(0);
  });

  it("a shorter retention deletes more; 0 keeps every row", async () => {
    const kept = await rowsOfEveryKind();
    expect((await tick(kept.prefix, { OUTBOX_RETENTION_HOURS: "0" })).lag?.pruned).toBe(0);
    expect((await rowsOf([kept.oldApplied])).size).toBe(1);
    const short = await rowsOfEveryKind();
    expect((await tick(short.prefix, { OUTBOX_RETENTION_HOURS: "50" })).lag?.pruned).toBe(2);
    const left = await rowsOf([short.oldApplied, short.recentApplied, short.theirs]);
    expect([...left.keys()]).toEqual([short.theirs]);
  });
});
