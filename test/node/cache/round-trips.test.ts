import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EdgeCache } from "../../../src/cache";
import { type CacheHarness, cacheHarness, gate, sleep } from "./harness";

/**
 * Round trips, counted by the gateway (every Upstash call is one HTTP request and one Worker
 * subrequest). Scripts are loaded before counting, so EVALSHA never falls back to EVAL here.
 */
let h: CacheHarness;
let cache: EdgeCache;
const noEarly = { earlyRefresh: false as const };

beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});
beforeEach(async () => {
  cache = h.cache();
  // Warm the script cache: every script once.
  await cache.getOrLoad("warm", async () => 0, {
    tags: ["w"],
    versionKey: "w:1",
    versionOf: () => 1,
  });
  await cache.get("warm", { versionKey: "w:1" }); // the read-only hit script
  await cache.inspect("warm", "w:1");
  await cache.invalidate("warm");
  await cache.invalidateTags("w");
  await cache.bumpVersion("w", 1, 1);
  await cache.apply({ keys: ["warm"] });
  await cache.freshness(["warm"]);
  await cache.stats();
  await h.resetCounter();
});

describe("round trips", () => {
  it("a hit validated against a version key and two tags: 1 request", async () => {
    const opts = {
      ...noEarly,
      tags: ["category:1", "products"],
      versionKey: "product:1",
      versionOf: (p: { version: number }) => p.version,
    };
    await cache.getOrLoad("product:1", async () => ({ version: 3 }), opts);
    await h.resetCounter();
    const hit = await cache.getOrLoad("product:1", async () => ({ version: 3 }), opts);
    expect(hit.status).toBe("HIT");
    expect(await h.requests()).toBe(1);
  });

  it("a miss: 1 request before the loader, 1 fill", async () => {
    let requestsBeforeLoad = -1;
    const miss = await cache.getOrLoad(
      "k",
      async () => {
        requestsBeforeLoad = await h.requests();
        return "v";
      },
      noEarly,
    );
    expect(miss.status).toBe("MISS");
    expect(requestsBeforeLoad).toBe(1);
    expect(await h.requests()).toBe(2);
  });

  it("a miss with waitUntil: the fill leaves the response path", async () => {
    const background: Promise<unknown>[] = [];
    const miss = await cache.getOrLoad("k", async () => "v", {
      ...noEarly,
      waitUntil: (p) => background.push(p),
    });
    expect(miss.status).toBe("MISS");
    expect(background).toHaveLength(1);
    await Promise.all(background);
    expect(await h.requests()).toBe(2);
  });

  it("invalidate of 100 keys: 1 request", async () => {
    const keys = Array.from({ length: 100 }, (_, i) => `k:${i}`);
    await Promise.all(keys.map((k) => cache.set(k, k)));
    await h.resetCounter();
    expect(await cache.invalidate(...keys)).toBe(100);
    expect(await h.requests()).toBe(1);
  });

  it("invalidateTags of 10 tags: 1 request", async () => {
    await cache.invalidateTags(...Array.from({ length: 10 }, (_, i) => `tag:${i}`));
    expect(await h.requests()).toBe(1);
  });

  it("a STALE read: 1 request on the response path, the refresh in the background", async () => {
    const opts = { ...noEarly, ttl: 100, staleTtl: 60_000, jitter: 0 };
    await cache.getOrLoad("k", async () => "old", opts);
    await sleep(200);
    await h.resetCounter();
    const background: Promise<unknown>[] = [];
    const loading = gate<string>(); // hold the refresh so its fill cannot race the count
    const stale = await cache.getOrLoad("k", () => loading.promise, {
      ...opts,
      waitUntil: (p) => background.push(p),
    });
    expect(stale.status).toBe("STALE");
    expect(await h.requests()).toBe(1);
    loading.open("new");
    await Promise.all(background);
    expect(await h.requests()).toBe(2); // + the fill
  });

  it("a HIT that triggers an early refresh: 2 requests more, neither awaited by the response", async () => {
    const early = h.cache({
      random: () => 0.5, // -ln(0.5) ≈ 0.69: XFetch fires with this beta
      telemetry: { flushIntervalMs: 3_600_000 }, // no stats flush in the count
    });
    const opts = { ttl: 60_000, jitter: 0, earlyRefresh: { beta: 1e6 } };
    const slow = async () => {
      await sleep(20);
      return "v1";
    };
    await early.getOrLoad("xf", slow, opts); // stores lt ≈ 20 ms
    await h.resetCounter();
    const background: Promise<unknown>[] = [];
    const loading = gate<string>();
    const hit = await early.getOrLoad("xf", loading.load, {
      ...opts,
      waitUntil: (p) => background.push(p),
    });
    expect(hit.status).toBe("HIT"); // answered while the refresh's loader is still held
    await loading.started; // the refresh's read has answered: it holds the lease
    // The HIT's read, and the read that takes the lease (the HIT's read did not: XFetch is
    // decided on its reply).
    expect(await h.requests()).toBe(2);
    loading.open("v2");
    await Promise.all(background);
    expect(await h.requests()).toBe(3); // + the fill
    expect((await early.get<string>("xf"))?.value).toBe("v2");
  });

  it("write-through and bumpVersion: 1 request each", async () => {
    await cache.writeThrough("user:1", { v: 2 }, 2);
    expect(await h.requests()).toBe(1);
    await cache.bumpVersion("user", 1, 3);
    expect(await h.requests()).toBe(2);
  });

  it("counters cost no request on the response path (counted in the isolate, flushed later)", async () => {
    await cache.getOrLoad("k", async () => 1, noEarly); // read + fill, counts 1 load
    await cache.getOrLoad("k", async () => 1, noEarly); // a hit: its read only
    expect(await h.requests()).toBe(3);
    const stats = await cache.stats();
    expect(stats.loads).toBeGreaterThanOrEqual(2); // warm-up load + this one
  });

  it("an L1 hit costs nothing", async () => {
    const l1 = h.cache({ l1: { ttlMs: 1000 } });
    await l1.getOrLoad("k", async () => 1, noEarly);
    await h.resetCounter();
    const r = await l1.getOrLoad("k", async () => 2, noEarly);
    expect(r).toMatchObject({ value: 1, l1: true });
    expect(await h.requests()).toBe(0);
  });

  it("apply (keys + tags + versions of one event): 1 request, and idempotent", async () => {
    const keys = ["product:1", "product:2", "list:a"];
    await Promise.all(keys.map((k) => cache.set(k, k)));
    await h.resetCounter();
    const event = {
      keys,
      tags: ["category:1", "category:2", "products"],
      versions: { "product:1": 5, "product:2": 7 },
    };
    expect(await cache.apply(event)).toEqual({ removed: 3, tagsBumped: 3, versionsAdvanced: 2 });
    expect(await h.requests()).toBe(1);
    // Redelivered: nothing left to delete, versions already there.
    expect(await cache.apply(event)).toMatchObject({ removed: 0, versionsAdvanced: 0 });
    // Out of order: an older event never moves a version back.
    await cache.apply({ versions: { "product:1": 4 } });
    expect((await cache.inspect("product:1", "product:1")).version).toBe(5);
  });

  it("freshness of 50 keys: 1 request", async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `f:${i}`);
    await Promise.all(keys.slice(0, 25).map((k) => cache.set(k, 1, { ttl: 60_000 })));
    await h.resetCounter();
    const { fresh, now } = await cache.freshness(keys);
    expect(Math.abs(now - Date.now())).toBeLessThan(5_000);
    expect(await h.requests()).toBe(1);
    expect([...fresh.values()].filter((v) => v === null)).toHaveLength(25);
    expect(fresh.get("f:0")).toBeGreaterThan(50_000);
  });

  it("concurrent write-throughs are auto-pipelined into 1 request (warmer fills)", async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `w:${i}`);
    const results = await Promise.all(keys.map((k, i) => cache.writeThrough(k, { i }, i + 1)));
    expect(results.every((r) => r.written)).toBe(true);
    expect(await h.requests()).toBe(1);
  });
});
