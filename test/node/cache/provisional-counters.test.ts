import { describe, expect, it } from "vitest";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Tag counters a read creates are provisional (lib/entry.lua, PROVISIONAL_COUNTER_MS) until an
 * entry is stored under them. Found by an API audit: every `GET /products?category=<id>` for
 * an id that names no category left a counter `{p}:t:category:<id>` without a TTL (the lease
 * captured it; the empty page was never stored), so any client could fill Redis with keys
 * that never expire, which volatile-* eviction cannot take.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const PROVISIONAL_MS = 600_000;

describe("tag counters a read creates", () => {
  it("expire when nothing is stored under them", async () => {
    const cache = h.cache();
    const page = await cache.getOrLoad("list:cat:404", async () => [], {
      tags: ["category:404"],
      cacheIf: () => false, // a page of a category that does not exist is not stored
    });
    expect(page.value).toEqual([]);
    const counter = `${cache.keys.prefix}:t:category:404`;
    expect(await h.redis.exists(counter)).toBe(1); // the lease captured it
    const pttl = await h.redis.pttl(counter);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(PROVISIONAL_MS);
  });

  it("become permanent with the first entry stored under them, and serve it", async () => {
    const cache = h.cache();
    const counter = `${cache.keys.prefix}:t:category:3`;
    // First a read that stores nothing (provisional), then one whose fill lands.
    await cache.getOrLoad("list:cat:3:empty", async () => [], {
      tags: ["category:3"],
      cacheIf: () => false,
    });
    expect(await h.redis.pttl(counter)).toBeGreaterThan(0);
    await cache.getOrLoad("list:cat:3", async () => [1, 2], { tags: ["category:3"] });
    expect(await h.redis.pttl(counter)).toBe(-1);
    expect(
      (await cache.getOrLoad("list:cat:3", async () => [9], { tags: ["category:3"] })).status,
    ).toBe("HIT");
    // A tagsOf tag (known only after loading) and a write-through's tag too.
    await cache.getOrLoad("product:7", async () => ({ id: 7, category: 5 }), {
      tagsOf: (p) => [`category:${p.category}`],
    });
    expect(await h.redis.pttl(`${cache.keys.prefix}:t:category:5`)).toBe(-1);
    await cache.set("product:8", { id: 8 }, { tags: ["category:6"] });
    expect(await h.redis.pttl(`${cache.keys.prefix}:t:category:6`)).toBe(-1);
  });

  it("become permanent when bumped, and a bump still invalidates what a lease captured", async () => {
    const cache = h.cache();
    const counter = `${cache.keys.prefix}:t:category:9`;
    let release!: () => void;
    let loads = 0;
    const slow = () => {
      loads++;
      return new Promise<number[]>((resolve) => {
        release = () => resolve([loads]);
      });
    };
    // A load under a lease that captured the provisional counter; a bump during the load.
    const reading = cache.getOrLoad("list:cat:9", slow, { tags: ["category:9"] });
    for (let i = 0; i < 50 && (await h.redis.exists(counter)) === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await h.redis.pttl(counter)).toBeGreaterThan(0);
    await cache.invalidateTags("category:9");
    expect(await h.redis.pttl(counter)).toBe(-1);
    release();
    await reading;
    // The fill was refused (the bump overtook the load): the next read loads again.
    const next = await cache.getOrLoad("list:cat:9", async () => [99], { tags: ["category:9"] });
    expect(next.status).toBe("MISS");
    expect(next.value).toEqual([99]);
  });

  it("one that expired before its fill refuses the fill: nothing is served under a lost counter", async () => {
    const cache = h.cache();
    const counter = `${cache.keys.prefix}:t:category:11`;
    let release!: () => void;
    const slow = () =>
      new Promise<number[]>((resolve) => {
        release = () => resolve([1]);
      });
    const reading = cache.getOrLoad("list:cat:11", slow, { tags: ["category:11"] });
    for (let i = 0; i < 50 && (await h.redis.exists(counter)) === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await h.redis.del(counter); // its provisional lifetime ran out during the load
    release();
    await reading;
    expect(await h.redis.exists(`${cache.keys.prefix}:e:list:cat:11`)).toBe(0);
  });
});
