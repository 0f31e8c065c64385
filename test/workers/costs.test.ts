import { Client } from "@neondatabase/serverless";
import { describe, expect, it } from "vitest";
import { cacheOutbox } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import { telemetryFor } from "../../src/cache/telemetry";
import type { Env } from "../../src/config/env";
import { categoryWarmable } from "../../src/domain/categories";
import { intentKey, sweptKey } from "../../src/domain/outbox-sweep";
import { productWarmable } from "../../src/domain/products";
import { userWarmable } from "../../src/domain/users";
import type { Warmable } from "../../src/domain/warmable";
import { resetRecoveryState } from "../../src/jobs/recovery";
import { api } from "./api";
import { insertCategory, withDb } from "./db";
import { consumeBatch, FakeQueue, runScheduled, testEnv } from "./helpers";
import { gatewayControl, stack, testRedis } from "./stack";

/**
 * What one request, cron tick, queue batch or telemetry flush costs, counted where the bill is
 * made: Redis requests and commands by the gateway (this file's own token, so no other file's
 * traffic is in the count) and Postgres statements and connections at the Neon driver (its
 * `Client`, patched below: the Worker runs in this test's isolate and module graph, as
 * lifecycle.test.ts's pool counts rely on). Every figure is exact; each test runs its scenario
 * once uncounted first, so a script's first NOSCRIPT -> EVAL on the server is not counted.
 *
 * Isolate-scoped background work is pinned where the README promises it and kept out of the
 * other counts: the outbox marker check (one GET per isolate per 5 s, on a request that reached
 * Redis: `resetRecoveryState` makes it due, a request just before makes it not) and the
 * telemetry flush (at most one request per isolate per second: `lastFlush` in the future makes
 * it not due).
 */

// ---------------------------------------------------------------- Postgres, counted at the driver

const pg = { statements: [] as string[], connections: 0 };
const client = Client.prototype as unknown as {
  query: (...args: unknown[]) => unknown;
  connect: (...args: unknown[]) => unknown;
};
const { query, connect } = client;
client.query = function (this: unknown, ...args: unknown[]) {
  // The callback form is the driver's own plumbing; drizzle and the guard use the promise form.
  if (typeof args.at(-1) !== "function") {
    const q = args[0];
    pg.statements.push(typeof q === "string" ? q : String((q as { text?: unknown }).text));
  }
  return query.apply(this, args);
};
client.connect = function (this: unknown, ...args: unknown[]) {
  pg.connections++;
  return connect.apply(this, args);
};

// ---------------------------------------------------------------- Redis, counted at the gateway

const token = stack.spareGatewayTokens.costs;
const counted = { UPSTASH_REDIS_REST_TOKEN: token };

interface Cost {
  requests: number;
  commands: number;
  byCommand: Record<string, number>;
  /** Read-only and writing calls, as Upstash classifies them. */
  readOnly: number;
  writing: number;
  /** Scripts Upstash would run under the database's global lock. */
  globalLock: number;
  statements: string[];
  connections: number;
}

/** What `work` cost, its waitUntil work included (the helpers wait for it). */
async function cost(work: () => Promise<unknown>): Promise<Cost> {
  await gatewayControl("reset", { token });
  pg.statements = [];
  pg.connections = 0;
  await work();
  const seen = (await gatewayControl("stats", { token })) as {
    requests: number;
    commands: number;
    byCommand: Record<string, number>;
    calls: { readOnly: number; writing: number };
    scripts: { globalLock: number };
  };
  return {
    requests: seen.requests,
    commands: seen.commands,
    byCommand: seen.byCommand,
    readOnly: seen.calls.readOnly,
    writing: seen.calls.writing,
    globalLock: seen.scripts.globalLock,
    statements: [...pg.statements],
    connections: pg.connections,
  };
}

const run = Date.now().toString(36);
let seq = 0;
const newPrefix = () => `tk${run}${++seq}`;

/** This isolate sends no telemetry flush for `prefix` for the next minute. */
function holdFlush(prefix: string): void {
  telemetryFor(prefix).lastFlush = Date.now() + 60_000;
}

/** A request of `prefix` on the counted token, with its flush held (see holdFlush). */
function request(prefix: string, method: string, path: string, extra: { admin?: boolean } = {}) {
  holdFlush(prefix);
  return api(method, path, { prefix, env: counted, ...extra });
}

/** Makes the outbox marker check not due for the next 5 s (a request that reached Redis just did it). */
async function markerChecked(prefix: string, path = "/products/299"): Promise<void> {
  resetRecoveryState(prefix);
  await request(prefix, "GET", path);
}

/** Reads with every read sampled (as the Worker's reads would over time), so the keys are hot. */
async function makeHot<T>(prefix: string, warmable: Warmable<T>, ids: readonly number[]) {
  const sampler = new EdgeCache({ redis: testRedis(), prefix, hotKeys: { sampleRate: 1 } });
  const rows = await withDb((db) => warmable.loadMany(db, ids));
  for (const id of ids) {
    const row = rows.get(id);
    if (row === undefined) throw new Error(`seeded row ${id} missing`);
    for (let round = 0; round < 3; round++) {
      await sampler.getOrLoad(warmable.key(id), async () => row, warmable.entry(row));
    }
  }
  return sampler;
}

// ---------------------------------------------------------------- reads

describe("what a read costs", () => {
  it("a product hit is one read-only Redis request and no Postgres; its 304 the same", async () => {
    const prefix = newPrefix();
    await request(prefix, "GET", "/products/5"); // the miss that fills it
    await markerChecked(prefix);
    const first = await request(prefix, "GET", "/products/5"); // the hit script, loaded once
    expect(first.headers.get("x-cache")).toBe("HIT");

    const hit = await cost(() => request(prefix, "GET", "/products/5"));
    expect(hit).toMatchObject({ requests: 1, commands: 1, readOnly: 1, writing: 0, globalLock: 0 });
    expect(hit.byCommand).toEqual({ EVALSHA: 1 });
    expect(hit).toMatchObject({ statements: [], connections: 0 });

    const etag = first.headers.get("etag") ?? "";
    const notModified = await cost(async () => {
      holdFlush(prefix);
      const res = await api("GET", "/products/5", {
        prefix,
        env: counted,
        headers: { "if-none-match": etag },
      });
      expect(res.status).toBe(304);
    });
    expect(notModified).toMatchObject({ requests: 1, readOnly: 1, statements: [], connections: 0 });
  });

  it("a product miss is the acquire and the fill, and one query on one connection", async () => {
    const prefix = newPrefix();
    await request(prefix, "GET", "/products/6"); // scripts loaded
    await markerChecked(prefix);
    const miss = await cost(async () => {
      const res = await request(prefix, "GET", "/products/7");
      expect(res.headers.get("x-cache")).toBe("MISS");
    });
    expect(miss).toMatchObject({ requests: 2, commands: 2, writing: 2, globalLock: 0 });
    expect(miss.statements).toHaveLength(1);
    expect(miss.connections).toBe(1);
  });

  it("the outbox marker check is one GET per isolate per 5 s, after a request that reached Redis", async () => {
    const prefix = newPrefix();
    await request(prefix, "GET", "/products/8");
    await request(prefix, "GET", "/products/8");
    resetRecoveryState(prefix); // as a new isolate: the check is due
    const due = await cost(() => request(prefix, "GET", "/products/8"));
    expect(due.byCommand).toEqual({ EVALSHA: 1, GET: 1 });
    const notDue = await cost(() => request(prefix, "GET", "/products/8"));
    expect(notDue.byCommand).toEqual({ EVALSHA: 1 });
  });

  it("the telemetry flush is one request, at most one per isolate per second, after a read", async () => {
    const prefix = newPrefix();
    await request(prefix, "GET", "/products/9");
    await markerChecked(prefix, "/products/9");
    telemetryFor(prefix).lastFlush = 0; // due: a flush script run, loaded on the server once
    await api("GET", "/products/9", { prefix, env: counted });
    await request(prefix, "GET", "/products/9"); // something pending again

    const reads = await cost(async () => {
      telemetryFor(prefix).lastFlush = Date.now() - 1_000; // due at the first read
      for (let i = 0; i < 3; i++) await api("GET", "/products/9", { prefix, env: counted });
    });
    // Three hits and one flush: the second and third reads came within the second.
    expect(reads).toMatchObject({ requests: 4, commands: 4, readOnly: 3, writing: 1 });
    expect(reads.globalLock).toBe(0);
  });
});

// ---------------------------------------------------------------- the dashboard and /health

describe("what an operator's page costs", () => {
  it("a dashboard refresh (GET /admin/stats) is 4 Redis commands and one Postgres query", async () => {
    const prefix = newPrefix();
    await request(prefix, "GET", "/admin/stats", { admin: true }); // scripts loaded
    await markerChecked(prefix);
    const refresh = await cost(() => request(prefix, "GET", "/admin/stats", { admin: true }));
    // stats and hot keys (read-only scripts), the heartbeats (MGET) and INFO; four requests.
    expect(refresh.byCommand).toEqual({ EVALSHA: 2, MGET: 1, INFO: 1 });
    expect(refresh).toMatchObject({ requests: 4, commands: 4, writing: 0, globalLock: 0 });
    expect(refresh.statements).toHaveLength(1);
    expect(refresh.connections).toBe(1);
    // The page and its script touch neither.
    for (const path of ["/admin/dashboard", "/admin/dashboard/app.js"]) {
      const page = await cost(() => api("GET", path, { prefix, env: counted }));
      expect(page).toMatchObject({ requests: 0, statements: [], connections: 0 });
    }
  });

  it("/health is one PING and one Postgres connection with `select 1`", async () => {
    const prefix = newPrefix();
    const probe = await cost(() => request(prefix, "GET", "/health"));
    expect(probe.byCommand).toEqual({ PING: 1 });
    expect(probe.statements).toEqual(["select 1"]);
    expect(probe.connections).toBe(1);
  });
});

// ---------------------------------------------------------------- writes

describe("what a write costs", () => {
  it("a product PATCH is the rate-limit check and the apply in Redis, on one Postgres connection", async () => {
    const prefix = newPrefix();
    const created = await api<{ id: number }>("POST", "/products", {
      prefix,
      body: { sku: `TK-${run}`, name: "costs", categoryId: 1, priceCents: 100 },
    });
    expect(created.status).toBe(201);
    const patch = async () => {
      holdFlush(prefix);
      const res = await api("PATCH", `/products/${created.body.id}`, {
        prefix,
        env: counted,
        body: { priceCents: 1200 + seq++ },
      });
      expect(res.status).toBe(200);
    };
    await patch(); // scripts loaded
    const write = await cost(patch);
    // One EVALSHA for the rate limit (README "Rate limits"), one for the apply (README "Writes
    // and the outbox"); the transaction and the outbox mark (waitUntil) share one connection.
    expect(write).toMatchObject({ requests: 2, commands: 2, writing: 2, globalLock: 0 });
    expect(write.byCommand).toEqual({ EVALSHA: 2 });
    expect(write.connections).toBe(1);

    // With OUTBOX_SWEEP_MINUTES (quiet cron ticks skip Postgres), one SET more: the writer's
    // intent (src/domain/outbox-sweep.ts), sent beside its transaction.
    const sweeping = async () => {
      holdFlush(prefix);
      const res = await api("PATCH", `/products/${created.body.id}`, {
        prefix,
        env: { ...counted, OUTBOX_SWEEP_MINUTES: "60" },
        body: { priceCents: 1200 + seq++ },
      });
      expect(res.status).toBe(200);
    };
    const withIntent = await cost(sweeping);
    expect(withIntent).toMatchObject({ requests: 3, commands: 3, writing: 3, globalLock: 0 });
    expect(withIntent.byCommand).toEqual({ EVALSHA: 2, SET: 1 });
    expect(withIntent.statements).toHaveLength(write.statements.length);
    expect(withIntent.connections).toBe(1);
  });

  it("a write's transaction is its conditional UPDATE (with the row's read-back) and the outbox insert", async () => {
    const prefix = newPrefix();
    const write = (method: string, path: string, body?: unknown) =>
      cost(async () => {
        const res = await api(method, path, {
          prefix,
          env: counted,
          body,
          headers: { "if-match": "*" },
        });
        expect(res.status, `${method} ${path}`).toBeLessThan(300);
      });
    const created = await api<{ id: number }>("POST", "/products", {
      prefix,
      body: { sku: `TK-${run}-w`, name: "costs", categoryId: 1, priceCents: 100 },
    });
    const product = `/products/${created.body.id}`;
    const category = await insertCategory({ slug: `tk-${run}`, name: "Costs" });
    // Each statement as its verb and first table: "update products", "commit".
    const shape = (statements: string[]) =>
      statements.map((q) => {
        const verb = q.trim().split(/\s+/, 1)[0]?.toLowerCase();
        const table = /(?:from|into|update)\s+"([a-z_]+)"/i.exec(q)?.[1];
        return table ? `${verb} ${table}` : verb;
      });

    // BEGIN, the UPDATE (If-Match in its WHERE) and the detail read back with its category in
    // one statement (a data-modifying CTE), the outbox INSERT, COMMIT; after the response
    // (waitUntil) the outbox row marked processed. A locking SELECT before the UPDATE, and the
    // read-back after it, were a round trip more each.
    const patched = await write("PATCH", product, { priceCents: 101 });
    expect(shape(patched.statements)).toEqual([
      "begin",
      "with products",
      "insert cache_outbox",
      "commit",
      "update cache_outbox",
    ]);
    expect(patched.statements[1]).toMatch(/^with "updated" as \(update "products"/);
    // A new category: its existence is the UPDATE's foreign key, no SELECT of its own.
    const moved = await write("PATCH", product, { categoryId: category });
    expect(moved.statements).toHaveLength(5);
    const renamed = await write("PATCH", `/categories/${category}`, { name: "Costs 2" });
    expect(shape(renamed.statements)).toEqual([
      "begin",
      "update categories",
      "insert cache_outbox",
      "commit",
      "update cache_outbox",
    ]);
    const deleted = await write("DELETE", product);
    expect(shape(deleted.statements)).toEqual([
      "begin",
      "update products",
      "insert cache_outbox",
      "commit",
      "update cache_outbox",
    ]);
    for (const cost of [patched, moved, renamed, deleted]) expect(cost.connections).toBe(1);
  });
});

// ---------------------------------------------------------------- cron and queue

describe("what the cron and the queue cost", () => {
  const bindings = (prefix: string, queue: FakeQueue): Env =>
    testEnv(prefix, { ...counted, PURGE_QUEUE: queue.asQueue() });

  it("a quiet tick (nothing pending, nothing hot) is 2 Redis requests and 2 statements on one connection", async () => {
    const prefix = newPrefix();
    const queue = new FakeQueue();
    await runScheduled(bindings(prefix, queue)); // scripts loaded
    const tick = await cost(() => runScheduled(bindings(prefix, queue)));
    // The hot-key read (read-only script: nothing hot, so no freshness read) and the heartbeat.
    expect(tick.byCommand).toEqual({ EVALSHA: 1, SET: 1 });
    expect(tick).toMatchObject({ requests: 2, readOnly: 1, writing: 1, globalLock: 0 });
    // The drain's SELECT of pending rows (none), and the outbox lag for the heartbeat with the
    // retention of applied rows in the same statement (OUTBOX_RETENTION_HOURS).
    expect(tick.statements).toHaveLength(2);
    expect(tick.statements[0]).toMatch(/^select .* from "cache_outbox"/);
    expect(tick.statements[1]).toMatch(/^\s*with pruned as \(\s*delete from "cache_outbox"/);
    expect(tick.statements[1]).toMatch(/select count\(\*\)::int as pending/);
    expect(tick.connections).toBe(1);
    expect(queue.calls).toBe(0);
  });

  it("with OUTBOX_SWEEP_MINUTES a quiet tick touches no Postgres: 3 Redis requests, 0 statements, 0 connections", async () => {
    const prefix = newPrefix();
    const queue = new FakeQueue();
    const sweeping = { ...bindings(prefix, queue), OUTBOX_SWEEP_MINUTES: "60" };
    // The first tick has no record of a sweep: it reads the outbox, and records that it did;
    // finding no intent, it recreates one (SET NX), whose write window makes the next tick
    // sweep too (a sweep, with the heartbeat: 4 requests).
    const first = await cost(() => runScheduled(sweeping));
    expect(first.byCommand).toEqual({ EVALSHA: 1, MGET: 1, SET: 3 });
    expect(first).toMatchObject({ requests: 5, readOnly: 2, writing: 3, globalLock: 0 });
    expect(first.statements).toHaveLength(2);
    expect(first.connections).toBe(1);
    const second = await cost(() => runScheduled(sweeping));
    expect(second.byCommand).toEqual({ EVALSHA: 1, MGET: 1, SET: 2 });
    expect(second).toMatchObject({ requests: 4, readOnly: 2, writing: 2, globalLock: 0 });
    expect(second.statements).toHaveLength(2);
    // The cron's next tick comes 5 minutes later, past that window: the intent as it finds it.
    const redis = testRedis();
    const swept = await redis.get<{ at: number }>(sweptKey(prefix));
    if (!swept) throw new Error("no sweep recorded");
    const earlier = `${swept.at - 5 * 60_000}.stest`;
    await redis.set(intentKey(prefix), earlier);
    await redis.set(sweptKey(prefix), { ...swept, intent: earlier });
    // Nothing written since: the sweep state's MGET, the hot keys and the heartbeat; Neon idle.
    const quiet = await cost(() => runScheduled(sweeping));
    expect(quiet.byCommand).toEqual({ EVALSHA: 1, MGET: 1, SET: 1 });
    expect(quiet).toMatchObject({ requests: 3, readOnly: 2, writing: 1, globalLock: 0 });
    expect(quiet.statements).toEqual([]);
    expect(quiet.connections).toBe(0);
    expect(queue.calls).toBe(0);
  });

  it("a tick that warms three entities loads them on one Postgres connection", async () => {
    const prefix = newPrefix();
    const queue = new FakeQueue();
    const sampler = await makeHot(prefix, productWarmable, [21, 22]);
    await makeHot(prefix, categoryWarmable, [2]);
    await makeHot(prefix, userWarmable, [11]);
    const keys = ["product:21", "product:22", "category:2", "user:11"];
    await sampler.invalidate(...keys);
    await runScheduled(bindings(prefix, queue)); // scripts loaded
    await sampler.invalidate(...keys);

    const tick = await cost(() => runScheduled(bindings(prefix, queue)));
    const beat = await testRedis().get<{ warm: { reloaded: number; queries: number } }>(
      `${prefix}:job:warm`,
    );
    expect(beat?.warm).toMatchObject({ reloaded: 4, queries: 3 });
    // The drain's SELECT, the lag, then one query per entity: one after the other, on the one
    // connection the drain opened (run together, each opened its own: 3 for 3 entities).
    expect(tick.statements).toHaveLength(5);
    expect(tick.connections).toBe(1);
    // Hot keys, freshness, the four write-throughs in one pipelined request, the heartbeat.
    expect(tick.requests).toBe(4);
    expect(tick.commands).toBe(7);
    expect(queue.calls).toBe(0);
  });

  it("a queue batch is one apply and one heartbeat whatever its size; its outbox rows one UPDATE", async () => {
    const prefix = newPrefix();
    const message = (i: number, outboxIds?: number[]) => ({
      id: `m${seq}-${i}`,
      body: {
        keys: [`product:${i + 1}`],
        tags: [`category:${(i % 5) + 1}`],
        origin: "costs-test",
        at: Date.now(),
        ...(outboxIds ? { outboxIds } : {}),
      },
    });
    const env = testEnv(prefix, counted);
    await consumeBatch([message(0)], env); // scripts loaded
    for (const size of [1, 50]) {
      seq++;
      const batch = await cost(async () => {
        const result = await consumeBatch(
          Array.from({ length: size }, (_, i) => message(i)),
          env,
        );
        expect(result.explicitAcks).toHaveLength(size);
      });
      expect(batch.byCommand).toEqual({ EVALSHA: 1, SET: 1 });
      expect(batch).toMatchObject({ requests: 2, statements: [], connections: 0 });
    }

    const ids = await withDb(async (db) => {
      const rows = await db
        .insert(cacheOutbox)
        .values(
          Array.from({ length: 50 }, (_, i) => ({
            event: { keys: [`product:${i + 1}`], origin: "costs-test" },
            prefix,
          })),
        )
        .returning({ id: cacheOutbox.id });
      return rows.map((r) => r.id);
    });
    seq++;
    const marked = await cost(() =>
      consumeBatch(
        ids.map((id, i) => message(i, [id])),
        env,
      ),
    );
    expect(marked.requests).toBe(2);
    expect(marked.statements).toHaveLength(1);
    expect(marked.statements[0]).toMatch(/^update "cache_outbox" set "processed_at"/);
    expect(marked.connections).toBe(1);
  });
});
