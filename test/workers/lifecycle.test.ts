import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { products, users } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import { poolCounts } from "../../src/runtime/services";
import { apiFor } from "./api";
import { insertCategory, withDb } from "./db";
import { testRedis } from "./stack";

/**
 * Background work that outlives the response: an early refresh (XFetch) and a stale refresh
 * scheduled with waitUntil must reload from Postgres and refill Redis after the response, on
 * the invocation's one pool, which is ended once the last background task is done.
 *
 * The refresh is forced by arranging the entry in Redis (the real entry the Worker filled):
 * a huge measured load time makes XFetch fire with probability 1 - 1e-6; a fresh-until in the
 * past makes the entry STALE. The row is then changed in Postgres behind the cache's back (no
 * version bump, no event), so only a reload can bring the new name into Redis.
 */
/** The `name` of a cached value or response body. */
const nameIn = (value: unknown) => (value as { name?: string } | null | undefined)?.name;

const run = Date.now().toString(36);
const prefix = `tl${run}`;
const api = apiFor(prefix);
const redis = testRedis();
const cache = new EdgeCache({ redis, prefix });
const entryKey = (key: string) => `${prefix}:e:${key}`;

let seq = 0;
async function newProduct(): Promise<number> {
  const categoryId = await insertCategory({ slug: `tl-${run}-${++seq}`, name: "Lifecycle" });
  return withDb(async (db) => {
    const [row] = await db
      .insert(products)
      .values({ sku: `TL-${run}-${seq}`, name: "before", categoryId, priceCents: 100 })
      .returning({ id: products.id });
    if (!row) throw new Error("no product");
    return row.id;
  });
}

async function newUser(): Promise<number> {
  return withDb(async (db) => {
    const [row] = await db
      .insert(users)
      .values({ email: `tl-${run}-${++seq}@example.com`, name: "before" })
      .returning({ id: users.id });
    if (!row) throw new Error("no user");
    return row.id;
  });
}

/** XFetch fires when now - δ·β·ln(r) ≥ fresh-until: with δ = 10^12 ms that is r < 1 - 1e-6. */
async function forceEarlyRefresh(key: string): Promise<void> {
  await redis.hset(entryKey(key), { lt: 1e12 });
}

/** Fresh-until in the past, stale-until a minute ahead (Redis clock): the next read is STALE. */
async function makeStale(key: string, versionKey: string): Promise<void> {
  const { now } = await cache.inspect(key, versionKey);
  await redis.hset(entryKey(key), { fu: now - 1000, su: now + 60_000 });
}

// Hits are counted in the isolate (this one: the Worker runs in the test's isolate) and summed
// with every flushed stats shard by stats().
const hits = async () => (await cache.stats()).hits;

/** Pools this isolate opened and ended during `fn` (the Worker's waitUntil work included). */
async function countPools(fn: () => Promise<void>): Promise<{ opened: number; ended: number }> {
  const before = { ...poolCounts };
  await fn();
  return { opened: poolCounts.opened - before.opened, ended: poolCounts.ended - before.ended };
}

describe("background work after the response", () => {
  it("an early refresh (XFetch) reloads from Postgres and refills Redis; the pool is ended after", async () => {
    const id = await newProduct();
    const key = `product:${id}`;
    expect((await api("GET", `/products/${id}`)).headers.get("x-cache")).toBe("MISS");
    const filled = await cache.inspect(key, key);
    expect(filled.state).toBe("fresh");
    await withDb((db) => db.update(products).set({ name: "after" }).where(eq(products.id, id)));
    await forceEarlyRefresh(key);

    const hitsBefore = await hits();
    let res: Awaited<ReturnType<typeof api>> | undefined;
    const pools = await countPools(async () => {
      res = await api<{ name: string }>("GET", `/products/${id}`);
    });
    expect(res?.headers.get("x-cache")).toBe("HIT");
    expect(nameIn(res?.body)).toBe("before");
    // The refresh's own read is not a second hit.
    expect((await hits()) - hitsBefore).toBe(1);

    const refreshed = await cache.inspect(key, key);
    expect(nameIn(refreshed.entry?.value)).toBe("after");
    expect(refreshed.entry?.createdAt).toBeGreaterThan(filled.entry?.createdAt ?? 0);
    expect(refreshed.entry?.fillId).not.toBe(filled.entry?.fillId);
    expect(refreshed.state).toBe("fresh");
    // One pool for the request and its refresh, ended once the refresh was done.
    expect(pools).toEqual({ opened: 1, ended: 1 });
    expect((await api<{ name: string }>("GET", `/products/${id}`)).body.name).toBe("after");
  });

  it("a stale refresh reloads and refills after the response, on the request's one pool", async () => {
    const id = await newProduct();
    const key = `product:${id}`;
    await api("GET", `/products/${id}`);
    const filled = await cache.inspect(key, key);
    await withDb((db) => db.update(products).set({ name: "after" }).where(eq(products.id, id)));
    await makeStale(key, key);

    let res: Awaited<ReturnType<typeof api>> | undefined;
    const pools = await countPools(async () => {
      res = await api("GET", `/products/${id}`);
    });
    expect(res?.headers.get("x-cache")).toBe("STALE");
    expect(nameIn(res?.body)).toBe("before");
    const refreshed = await cache.inspect(key, key);
    expect(refreshed.state).toBe("fresh");
    expect(nameIn(refreshed.entry?.value)).toBe("after");
    expect(refreshed.entry?.createdAt).toBeGreaterThan(filled.entry?.createdAt ?? 0);
    expect(refreshed.entry?.fillId).not.toBe(filled.entry?.fillId);
    expect(pools).toEqual({ opened: 1, ended: 1 });
  });

  it("the users path refreshes early on one pool that is ended (no second pool after dispose)", async () => {
    const id = await newUser();
    const key = `user:${id}`;
    await api("GET", `/users/${id}`);
    const filled = await cache.inspect(key, key);
    await withDb((db) => db.update(users).set({ name: "after" }).where(eq(users.id, id)));
    await forceEarlyRefresh(key);

    let res: Awaited<ReturnType<typeof api>> | undefined;
    const pools = await countPools(async () => {
      res = await api("GET", `/users/${id}`);
    });
    // The users loader reaches for the pool only when it runs: after the refresh's own read,
    // i.e. after the response. It must find the invocation's pool still open, not open another.
    expect(res?.headers.get("x-cache")).toBe("HIT");
    const refreshed = await cache.inspect(key, key);
    expect(nameIn(refreshed.entry?.value)).toBe("after");
    expect(refreshed.entry?.createdAt).toBeGreaterThan(filled.entry?.createdAt ?? 0);
    expect(refreshed.entry?.fillId).not.toBe(filled.entry?.fillId);
    // The HIT needed no query: the pool is opened by the refresh, then ended.
    expect(pools).toEqual({ opened: 1, ended: 1 });

    // A HIT that schedules nothing opens no pool at all.
    const idle = await countPools(async () => {
      expect((await api("GET", `/users/${id}`)).headers.get("x-cache")).toBe("HIT");
    });
    expect(idle).toEqual({ opened: 0, ended: 0 });
  });
});

describe("stats and hot-key samples after the response", () => {
  /** Every stats shard of the prefix, read straight from Redis (what all isolates flushed). */
  async function shards(): Promise<Array<Record<string, string> | null>> {
    return Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        redis.hgetall<Record<string, string>>(`${prefix}:stats:${i}`),
      ),
    );
  }
  const flushedHits = (all: Array<Record<string, string> | null>) =>
    all.reduce((sum, s) => sum + Number(s?.hits ?? 0), 0);

  it("a request after the flush interval hands one flush to waitUntil; counts land in this isolate's shard", async () => {
    const id = await newProduct();
    await api("GET", `/products/${id}`);
    expect((await api("GET", `/products/${id}`)).headers.get("x-cache")).toBe("HIT");
    const before = flushedHits(await shards());
    const seen = await cache.stats(); // flushed shards + what this isolate still holds
    expect(seen.hits).toBeGreaterThan(before);

    // Past the 1 s flush interval, the next read starts a background flush (waitUntil, which
    // the test helper waits for like the runtime would, without delaying the response).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await api("GET", `/products/${id}`)).headers.get("x-cache")).toBe("HIT");
    const after = await shards();
    expect(flushedHits(after)).toBeGreaterThanOrEqual(seen.hits);
    // One isolate here, so one shard holds every hit: the others received none.
    expect(after.filter((s) => Number(s?.hits ?? 0) > 0)).toHaveLength(1);
    // And nothing is counted twice: flushed + pending is what stats() reports.
    expect((await cache.stats()).hits).toBe(seen.hits + 1);
  });
});
