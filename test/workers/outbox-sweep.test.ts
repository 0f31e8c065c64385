import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cacheOutbox, type JsonValue, products } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import type { Env } from "../../src/config/env";
import { MAX_OUTBOX_ATTEMPTS, outboxLag } from "../../src/domain/outbox";
import {
  intentKey,
  recordOutboxIntent,
  type SweepRecord,
  sweptKey,
} from "../../src/domain/outbox-sweep";
import { warmables } from "../../src/domain/warmables";
import { runScheduled } from "../../src/jobs/warm";
import { apiFor } from "./api";
import { insertCategory, withDb } from "./db";
import { consumeBatch, FakeQueue, testEnv, withServices } from "./helpers";
import { testRedis } from "./stack";

/**
 * OUTBOX_SWEEP_MINUTES against real Redis and Postgres: quiet cron ticks leave Postgres alone
 * (so an idle Neon compute can scale to zero), and every way a pending row can be committed
 * makes the next tick read the outbox again. The rules one by one: test/node/outbox-sweep.test.ts;
 * what each kind of tick costs: costs.test.ts.
 */

const run = Date.now().toString(36);
const redis = testRedis();
let seq = 0;
const newPrefix = () => `sw${run}${++seq}`;
const SWEEP = { OUTBOX_SWEEP_MINUTES: "60" } satisfies Partial<Env>;

const tick = (prefix: string, env: Partial<Env> = SWEEP) =>
  withServices(prefix, env, (s) =>
    runScheduled(s, { cron: "*/5 * * * *", scheduledTime: Date.now() }, warmables),
  );

/** A pending row of `prefix` as a writer commits it (aged past the drain's grace unless `young`). */
async function pendingRow(prefix: string, keys: string[], young = false): Promise<number> {
  const [row] = await withDb((db) =>
    db
      .insert(cacheOutbox)
      .values({
        event: { origin: "sweep-test", keys } as { [key: string]: JsonValue },
        prefix,
        createdAt: young ? sql`now()` : sql`now() - interval '1 minute'`,
      })
      .returning({ id: cacheOutbox.id }),
  );
  if (!row) throw new Error("no outbox row");
  return row.id;
}

/** A product of its own category, in Postgres only (nothing cached). */
async function newProduct(prefix: string): Promise<{ id: number }> {
  const categoryId = await insertCategory({ slug: `sw-${prefix}`, name: "Sweep" });
  const [product] = await withDb((db) =>
    db
      .insert(products)
      .values({ sku: `SW-${prefix}`, name: "old", categoryId, priceCents: 100 })
      .returning({ id: products.id }),
  );
  if (!product) throw new Error("no product");
  return product;
}

/**
 * A first sweep finds no intent and recreates one (seedIntent) with its own start as its time,
 * so the ticks within the write window after it sweep too. The cron's ticks are 5 minutes
 * apart, a test's milliseconds: this moves that intent back 5 minutes, as the next sweep of a
 * real cron would find it, so the next tick may be quiet.
 */
async function pastWriteWindow(prefix: string): Promise<void> {
  const swept = await redis.get<SweepRecord>(sweptKey(prefix));
  const intent = await redis.get<string>(intentKey(prefix));
  expect(intent).toMatch(/^\d+\.s/);
  expect(swept?.intent).toBe(intent);
  if (!swept) throw new Error("no sweep recorded");
  const earlier = `${swept.at - 5 * 60_000}.stest`;
  await redis.set(intentKey(prefix), earlier);
  await redis.set(sweptKey(prefix), { ...swept, intent: earlier });
}

const pendingOf = (prefix: string) => withDb((db) => outboxLag(db, prefix));

/** A cached entry under `key` (its version key the key itself), read back as `read()`. */
async function cached(prefix: string, key: string): Promise<() => Promise<unknown>> {
  const cache = new EdgeCache({ redis, prefix });
  await cache.writeThrough(key, { name: "cached" }, 1, { ttl: 600_000 });
  const read = async () => (await cache.get(key, { versionKey: key }))?.value ?? null;
  expect(await read()).toEqual({ name: "cached" });
  return read;
}

describe("OUTBOX_SWEEP_MINUTES: quiet cron ticks leave Postgres alone", () => {
  it("by default (0) every tick reads the outbox and nothing is recorded", async () => {
    const prefix = newPrefix();
    for (const _ of [1, 2]) {
      const report = await tick(prefix, {});
      expect(report.sweep).toEqual({ sweep: true, why: "every tick (OUTBOX_SWEEP_MINUTES=0)" });
      expect(report.drain).toHaveProperty("stoppedBy", "caught-up");
      expect(report.lag).not.toBeNull();
    }
    expect(await redis.get(sweptKey(prefix))).toBeNull();
  });

  it("after a clean sweep, a tick with no write since skips the drain and the lag", async () => {
    const prefix = newPrefix();
    const first = await tick(prefix);
    expect(first.sweep).toEqual({ sweep: true, why: "no record of an earlier sweep" });
    expect(first.drain).toHaveProperty("stoppedBy", "caught-up");
    // It found no intent and recreated one, so that a missing intent always means a lost one.
    const seeded = await redis.get<string>(intentKey(prefix));
    expect(seeded).toMatch(/^\d+\.s/);
    expect(await redis.get(sweptKey(prefix))).toMatchObject({ clean: true, intent: seeded });
    // Within the write window of that intent: a writer's intent evicted just before the first
    // sweep may belong to a commit after its snapshot.
    expect((await tick(prefix)).sweep).toEqual({
      sweep: true,
      why: "the last sweep recreated the intent record (one may have been lost just before)",
    });
    await pastWriteWindow(prefix);

    const second = await tick(prefix);
    expect(second.sweep.sweep).toBe(false);
    expect(second.sweep.why).toMatch(/^quiet: no write since the clean sweep of /);
    expect(second.drain).toEqual({ skipped: second.sweep.why });
    expect(second.lag).toBeNull();
  });

  it("a writer that died after its commit: its intent makes the next tick drain its row", async () => {
    const prefix = newPrefix();
    await tick(prefix); // clean
    const read = await cached(prefix, "product:1");
    // What commitWrite does before its COMMIT, then the row, and no apply: the writer is gone.
    await withServices(prefix, SWEEP, (s) => recordOutboxIntent(s.redis, s.config));
    await pendingRow(prefix, ["product:1"]);

    const next = await tick(prefix);
    expect(next.sweep).toEqual({ sweep: true, why: "a write since the last sweep" });
    expect(next.drain).toHaveProperty("applied", 1);
    expect(await read()).toBeNull();
    expect((await pendingOf(prefix)).pending).toBe(0);
  });

  it("without the intent (a writer that records none) the same row would wait: what the intent is for", async () => {
    const prefix = newPrefix();
    await tick(prefix); // clean
    await pastWriteWindow(prefix);
    const read = await cached(prefix, "product:1");
    await pendingRow(prefix, ["product:1"]);

    const next = await tick(prefix);
    expect(next.sweep.sweep).toBe(false);
    expect(await read()).toEqual({ name: "cached" });
    expect((await pendingOf(prefix)).pending).toBe(1);
  });

  it("an intent lost before the next tick (evicted) after a sweep that saw none: the next tick still drains the row", async () => {
    const prefix = newPrefix();
    // A clean sweep a minute ago that saw no intent: the first sweep before sweeps recreated a
    // missing one, or one whose recreation a writer's intent won (seedIntent).
    await redis.set(sweptKey(prefix), { at: Date.now() - 60_000, clean: true, intent: null });
    const read = await cached(prefix, "product:7");
    // A writer records its intent, commits, and dies; then Redis evicts the intent key (Upstash
    // falls back to evicting keys without a TTL at random): the swept record saw no intent either.
    await withServices(prefix, SWEEP, (s) => recordOutboxIntent(s.redis, s.config));
    await pendingRow(prefix, ["product:7"]);
    await redis.del(intentKey(prefix));

    const next = await tick(prefix);
    expect(next.sweep).toEqual({
      sweep: true,
      why: "no intent record (evicted, or never written)",
    });
    expect(next.drain).toHaveProperty("applied", 1);
    expect(await read()).toBeNull();
  });

  it("a write through the API records its intent before it answers: the next tick reads the outbox", async () => {
    const prefix = newPrefix();
    const product = await newProduct(prefix);
    await tick(prefix); // clean
    const before = Date.now();
    const api = apiFor(prefix, { env: SWEEP });
    const patch = await api("PATCH", `/products/${product.id}`, { body: { name: "new" } });
    expect(patch.status).toBe(200);
    const intent = await redis.get<string>(intentKey(prefix));
    expect(Number.parseInt(String(intent), 10)).toBeGreaterThanOrEqual(before);

    const next = await tick(prefix);
    expect(next.sweep).toEqual({ sweep: true, why: "a write since the last sweep" });
    // The write applied its own event: nothing for the drain.
    expect(next.drain).toMatchObject({ stoppedBy: "caught-up", applied: 0 });
    // Its sweep began within the write window of the intent (the writer might have committed
    // after its SELECT): the tick after it reads the outbox again.
    expect((await tick(prefix)).sweep).toEqual({
      sweep: true,
      why: "a write just before the last sweep",
    });
  });

  it("with OUTBOX_SWEEP_MINUTES off, a write records no intent (no Redis request added)", async () => {
    const prefix = newPrefix();
    const product = await newProduct(prefix);
    const api = apiFor(prefix);
    expect((await api("PATCH", `/products/${product.id}`, { body: { name: "x" } })).status).toBe(
      200,
    );
    expect(await redis.get(intentKey(prefix))).toBeNull();
  });

  it("rows left pending (young ones the drain leaves to their writers) keep every tick reading", async () => {
    const prefix = newPrefix();
    await withServices(prefix, SWEEP, (s) => recordOutboxIntent(s.redis, s.config));
    await pendingRow(prefix, ["product:2"], true);
    const first = await tick(prefix);
    expect(first.lag?.pending).toBe(1);
    expect(await redis.get(sweptKey(prefix))).toMatchObject({ clean: false });
    expect((await tick(prefix)).sweep).toEqual({
      sweep: true,
      why: "the last sweep left rows pending",
    });
  });

  it("parked rows (no drain takes them) do not keep the ticks reading", async () => {
    const prefix = newPrefix();
    const id = await pendingRow(prefix, ["product:3"]);
    await withDb((db) =>
      db
        .update(cacheOutbox)
        .set({ attempts: MAX_OUTBOX_ATTEMPTS, lastError: "parked for the test" })
        .where(sql`${cacheOutbox.id} = ${id}`),
    );
    const first = await tick(prefix);
    expect(first.lag).toMatchObject({ pending: 1, stuck: 1 });
    await pastWriteWindow(prefix);
    expect((await tick(prefix)).sweep.sweep).toBe(false);
  });

  it("reads the outbox when its last read is OUTBOX_SWEEP_MINUTES old, or when what it recorded is gone", async () => {
    const prefix = newPrefix();
    await redis.set(sweptKey(prefix), { at: Date.now() - 61 * 60_000, clean: true, intent: null });
    const due = await tick(prefix);
    expect(due.sweep).toEqual({ sweep: true, why: "periodic (last sweep 61 min ago)" });
    expect(due.drain).toHaveProperty("stoppedBy", "caught-up");

    // An intent recorded long before a clean sweep that saw it: quiet…
    const old = `${Date.now() - 30 * 60_000}.wtest`;
    await redis.set(intentKey(prefix), old);
    await redis.set(sweptKey(prefix), { at: Date.now() - 60_000, clean: true, intent: old });
    expect((await tick(prefix)).sweep.sweep).toBe(false);
    // …until the intent is lost (evicted, deleted by hand): unknown reads Postgres.
    await redis.del(intentKey(prefix));
    expect((await tick(prefix)).sweep).toEqual({ sweep: true, why: "the intent record is gone" });
    await redis.del(sweptKey(prefix));
    expect((await tick(prefix)).sweep).toEqual({
      sweep: true,
      why: "no record of an earlier sweep",
    });
  });

  it("the other ways a pending row is committed record an intent too: dead letters, an async purge", async () => {
    const prefix = newPrefix();
    await tick(prefix); // clean
    // A dead event without outbox rows becomes a pending row (src/jobs/dead-letter.ts).
    const result = await consumeBatch(
      [{ id: `dl-${prefix}`, body: { keys: ["product:4"], origin: "sweep-test", at: Date.now() } }],
      testEnv(prefix, SWEEP),
      "edgecache-purge-dlq",
    );
    expect(result.explicitAcks).toEqual([`dl-${prefix}`]);
    expect((await pendingOf(prefix)).pending).toBe(1);
    expect((await tick(prefix)).sweep).toEqual({
      sweep: true,
      why: "a write since the last sweep",
    });

    const other = newPrefix();
    await tick(other); // clean
    const queue = new FakeQueue();
    const admin = apiFor(other, { admin: true, env: { ...SWEEP, PURGE_QUEUE: queue.asQueue() } });
    const purge = await admin("POST", "/admin/invalidate", {
      body: { keys: ["product:5"], async: true },
    });
    expect(purge.status).toBe(202);
    expect((await tick(other)).sweep).toEqual({ sweep: true, why: "a write since the last sweep" });
  });

  it("a parked row an admin gives back to the drains records an intent: the next tick applies it", async () => {
    const prefix = newPrefix();
    const read = await cached(prefix, "product:6");
    const id = await pendingRow(prefix, ["product:6"]);
    await withDb((db) =>
      db
        .update(cacheOutbox)
        .set({ attempts: MAX_OUTBOX_ATTEMPTS, lastError: "parked for the test" })
        .where(sql`${cacheOutbox.id} = ${id}`),
    );
    await tick(prefix); // clean: parked rows do not count
    const admin = apiFor(prefix, { admin: true, env: SWEEP });
    expect((await admin("POST", `/admin/outbox/${id}/retry`)).status).toBe(200);
    const next = await tick(prefix);
    expect(next.sweep).toEqual({ sweep: true, why: "a write since the last sweep" });
    expect(next.drain).toHaveProperty("applied", 1);
    expect(await read()).toBeNull();
  });
});
