import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidKeyError, jitterTtl, shouldRefreshEarly } from "../../../src/cache";
import { type CacheHarness, cacheHarness, seeded, sleep } from "./harness";

let h: CacheHarness;
beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});

describe("TTL jitter", () => {
  it("spreads a TTL uniformly over ±jitter (pure)", () => {
    const random = seeded(7);
    const ttls = Array.from({ length: 10_000 }, () => jitterTtl(100_000, 0.1, random));
    expect(Math.min(...ttls)).toBeGreaterThanOrEqual(90_000);
    expect(Math.max(...ttls)).toBeLessThanOrEqual(110_000);
    const mean = ttls.reduce((a, b) => a + b, 0) / ttls.length;
    expect(Math.abs(mean - 100_000)).toBeLessThan(300);
    // Uniform: each fifth of the range holds about a fifth of the samples.
    const buckets = [0, 0, 0, 0, 0];
    for (const t of ttls) {
      const i = Math.min(4, Math.floor((t - 90_000) / 4_000));
      buckets[i] = (buckets[i] ?? 0) + 1;
    }
    for (const b of buckets) expect(b).toBeGreaterThan(1_800);
    expect(jitterTtl(100_000, 0, random)).toBe(100_000);
  });

  it("entries written together get TTLs spread over the configured range", async () => {
    const cache = h.cache({ random: seeded(11) });
    const keys = Array.from({ length: 100 }, (_, i) => `j:${i}`);
    await Promise.all(keys.map((k) => cache.set(k, 1, { ttl: 100_000, jitter: 0.2 })));
    const lifetimes = await Promise.all(
      keys.map(async (k) => {
        const e = (await cache.inspect(k)).entry;
        return (e?.freshUntil ?? 0) - (e?.createdAt ?? 0);
      }),
    );
    expect(Math.min(...lifetimes)).toBeGreaterThanOrEqual(80_000);
    expect(Math.max(...lifetimes)).toBeLessThanOrEqual(120_000);
    // A naive cache writes 100 identical TTLs; jitter spreads them over most of the range.
    expect(Math.max(...lifetimes) - Math.min(...lifetimes)).toBeGreaterThan(30_000);
    expect(new Set(lifetimes).size).toBeGreaterThan(90);
  });
});

describe("XFetch early refresh", () => {
  it("refreshes with probability exp(-gap / (delta * beta)) (pure, statistical)", () => {
    const random = seeded(42);
    const delta = 100;
    const beta = 1;
    for (const gap of [50, 100, 200, 400]) {
      const n = 20_000;
      let refreshed = 0;
      for (let i = 0; i < n; i++) {
        if (shouldRefreshEarly(1_000_000, 1_000_000 + gap, delta, beta, random)) refreshed++;
      }
      const expected = Math.exp(-gap / (delta * beta));
      expect(Math.abs(refreshed / n - expected)).toBeLessThan(0.015);
    }
    // Off, or without a measured load time, it never fires.
    expect(shouldRefreshEarly(0, 10, 100, 0, () => 0.0001)).toBe(false);
    expect(shouldRefreshEarly(0, 10, 0, 1, () => 0.0001)).toBe(false);
  });

  it("refreshes a hot key before expiry, once, when the draw says so", async () => {
    const prefix = `xf${Date.now()}`;
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(20);
      return `v${loads}`;
    };
    // δ ≈ 20 ms, β = 1000 → δβ ≈ 20 s against a 10 s TTL: a draw of 0.01 fires, 0.99 never.
    const opts = { ttl: 10_000, jitter: 0, earlyRefresh: { beta: 1000 } };
    const calm = h.cache({ random: () => 0.99 }, prefix);
    await calm.getOrLoad("hot", loader, opts);
    for (let i = 0; i < 5; i++) await calm.getOrLoad("hot", loader, opts);
    await calm.settle();
    expect(loads).toBe(1);

    const eager = h.cache({ random: () => 0.01 }, prefix);
    const hit = await eager.getOrLoad("hot", loader, opts);
    expect(hit.status).toBe("HIT"); // answered from cache; the refresh runs behind it
    expect(hit.value).toBe("v1");
    await eager.settle();
    expect(loads).toBe(2);
    const after = await calm.getOrLoad("hot", loader, opts);
    expect(after).toMatchObject({ status: "HIT", value: "v2" });
    expect((await eager.stats()).early_refreshes).toBe(1);
  });
});

describe("absolute expiry", () => {
  it("caps fresh and stale windows at expiresAt", async () => {
    const cache = h.cache();
    const expiresAt = Date.now() + 5_000;
    await cache.set("sale", { pct: 20 }, { ttl: 60_000, staleTtl: 60_000, expiresAt });
    const e = await cache.inspect("sale");
    expect(e.entry?.staleUntil).toBeLessThanOrEqual(expiresAt);
    expect(e.entry?.freshUntil).toBeLessThanOrEqual(expiresAt);
    expect(e.pttl).toBeLessThanOrEqual(5_000);
    expect(await cache.set("gone", 1, { expiresAt: Date.now() - 1 })).toEqual({
      written: false,
      reason: "expired",
    });
  });
});

describe("pattern purge", () => {
  it("purges 10,000 matching keys in bounded steps via the cursor, and nothing else", async () => {
    const cache = h.cache();
    const prefix = cache.keys.prefix;
    // Bulk-create entries server-side (10,000 fills would be 10,000 requests).
    await h.redis.eval(
      `for i = 1, 10000 do redis.call('HSET', ARGV[1] .. ':e:session:' .. i, 'v', '1') end
       for i = 1, 500 do redis.call('HSET', ARGV[1] .. ':e:product:' .. i, 'v', '1') end
       for i = 1, 100 do redis.call('SET', ARGV[1] .. ':l:session:' .. i, 'x') end
       return 1`,
      [],
      [prefix],
    );
    let cursor = "0";
    let deleted = 0;
    let steps = 0;
    do {
      const step = await cache.purgePattern("session:*", { cursor, budget: 2_000, count: 500 });
      expect(step.scanned).toBeLessThanOrEqual(2_000);
      cursor = step.cursor;
      deleted += step.deleted;
      steps++;
      if (step.done) break;
    } while (steps < 1000);
    expect(steps).toBeGreaterThan(1);
    expect(deleted).toBe(10_000);
    const left = await h.redis.eval(
      `local n = 0
       for _, pat in ipairs({':e:session:*', ':l:session:*', ':e:product:*'}) do
         local c = '0'
         repeat
           local r = redis.call('SCAN', c, 'MATCH', ARGV[1] .. pat, 'COUNT', 1000)
           c = r[1]
           n = n + #r[2] * (pat == ':e:product:*' and 1000000 or 1)
         until c == '0'
       end
       return n`,
      [],
      [prefix],
    );
    // No session entry or lease left; all 500 product entries kept.
    expect(left).toBe(500 * 1_000_000);
  });

  it("refuses keys and tags that would inject glob characters", async () => {
    const cache = h.cache();
    await expect(cache.getOrLoad("product:*", async () => 1)).rejects.toThrow(/Invalid cache key/);
    await expect(cache.invalidateTags("cat[1]")).rejects.toThrow(/Invalid cache tag/);
    await expect(cache.invalidate("a b")).rejects.toThrow(/Invalid cache key/);
  });

  it("an invalid name in a write is a caller bug (InvalidKeyError), not a Redis fault, and sends nothing", async () => {
    const cache = h.cache();
    await h.resetCounter();
    // CacheWriteError means "Redis is unreachable, use the outbox": a bad name must not look like one.
    const calls = [
      cache.invalidate("ok", "a b"),
      cache.invalidateTags("ok", "cat[1]"),
      cache.apply({ keys: ["ok"], tags: ["t*"] }),
      cache.apply({ versions: { "v 1": 2 } }),
      cache.bumpVersion("product", "4 2", 1),
      cache.purgePattern("a b*"),
    ];
    for (const call of calls) await expect(call).rejects.toBeInstanceOf(InvalidKeyError);
    expect(await h.requests()).toBe(0);
    expect((await cache.stats()).redis_errors ?? 0).toBe(0);
  });
});

describe("hot keys", () => {
  it("samples reads in the read script and ranks keys by decayed frequency", async () => {
    // decay 1: a minute boundary during the test would otherwise weigh the earlier reads down.
    const cache = h.cache({ hotKeys: { sampleRate: 1, decay: 1 } });
    const read = (k: string) => cache.getOrLoad(k, async () => k, { earlyRefresh: false });
    for (let i = 0; i < 30; i++) await read("very-hot");
    for (let i = 0; i < 10; i++) await read("warm");
    await read("cold");
    const top = await cache.hotKeys(2);
    expect(top.map((t) => t.key)).toEqual(["very-hot", "warm"]);
    expect(top[0]?.score).toBe(30);
  });

  it("ranks with the unflushed samples added to every key's flushed score, not to the top n's only", async () => {
    const cache = h.cache({ hotKeys: { sampleRate: 1, decay: 1 } });
    const read = (k: string) => cache.getOrLoad(k, async () => k, { earlyRefresh: false });
    for (let i = 0; i < 10; i++) await read("a");
    for (let i = 0; i < 9; i++) await read("b");
    await cache.flushStats();
    for (let i = 0; i < 5; i++) await read("b"); // pending: b is now 14 against a's 10
    expect(await cache.hotKeys(1)).toEqual([{ key: "b", score: 14 }]);
    expect((await cache.hotKeys(2)).map((t) => t.key)).toEqual(["b", "a"]);
    // n is a whole number: 0 asks for nothing, anything else is a caller bug.
    expect(await cache.hotKeys(0)).toEqual([]);
    await expect(cache.hotKeys(-1)).rejects.toThrow(RangeError);
    await expect(cache.hotKeys(Number.NaN)).rejects.toThrow(RangeError);
  });

  it("weights older windows down", async () => {
    const cache = h.cache({ hotKeys: { sampleRate: 1, windowMs: 300, windows: 3, decay: 0.5 } });
    const read = (k: string) => cache.getOrLoad(k, async () => k, { earlyRefresh: false });
    for (let i = 0; i < 10; i++) await read("was-hot");
    await sleep(350); // next window
    for (let i = 0; i < 7; i++) await read("now-hot");
    const top = await cache.hotKeys(2);
    expect(top[0]?.key).toBe("now-hot");
    expect(top[1]?.score).toBeLessThan(10);
  });
});

describe("inspect, get, set", () => {
  it("shows entry, deadlines, PTTL, lease, version and tags", async () => {
    const cache = h.cache();
    await cache.writeThrough("user:3", { name: "Ada" }, 4, { tags: ["users"], ttl: 10_000 });
    const e = await cache.inspect("user:3", "user:3");
    expect(e.state).toBe("fresh");
    expect(e.entry?.value).toEqual({ name: "Ada" });
    expect(e.entry?.version).toBe(4);
    expect(e.version).toBe(4);
    expect(Object.keys(e.currentTags)).toEqual(["users"]);
    expect(e.entry?.tags.users).toBe(e.currentTags.users);
    expect(e.pttl).toBeGreaterThan(0);
    expect(e.leasePttl).toBe(-2);
    // Versioned: read with its version key (without one it is never served).
    expect(
      (await cache.get<{ name: string }>("user:3", { versionKey: "user:3" }))?.value.name,
    ).toBe("Ada");
    expect(await cache.get("nothing")).toBeNull();
  });

  it("a reader that declares no version key is never served a versioned entry: a bump would not reach it", async () => {
    // Found by an audit: the entry kept its `ver` but not that it had a version key, so a read
    // without one (a route that forgot it, a `get()` peek) was served it after a bump.
    const prefix = `vk${Date.now().toString(36)}`;
    const cache = h.cache({}, prefix);
    const versioned = { versionKey: "product:1", versionOf: (p: { v: number }) => p.v };
    await cache.getOrLoad("product:1", async () => ({ v: 1 }), versioned);
    // Before the bump, with its version key declared, it is served.
    expect((await cache.get("product:1", { versionKey: "product:1" }))?.value).toEqual({ v: 1 });
    await cache.bumpVersion("product", 1, 2);
    expect(await cache.get("product:1")).toBeNull();
    const other = h.cache({}, prefix); // another isolate, which predicts nothing about the key
    const read = await other.getOrLoad("product:1", async () => ({ v: 2 }), {});
    expect(read).toMatchObject({ status: "MISS", value: { v: 2 } });
    // Unversioned entries are read as before, by anyone.
    await cache.set("plain", 1);
    expect((await other.get("plain"))?.value).toBe(1);
    expect((await other.getOrLoad("plain", async () => 2, {})).status).toBe("HIT");
  });

  it("a write-through honours cacheIf: a value it refuses is not stored, and the old entry goes", async () => {
    const cache = h.cache();
    const opts = { cacheIf: (u: { public: boolean }) => u.public, ttl: 60_000 };
    await cache.writeThrough("user:9", { public: true }, 1, opts);
    const refused = await cache.writeThrough("user:9", { public: false }, 2, opts);
    // It was stored for the full ttl; the public version 1 stays cached as well would be stale.
    expect(refused).toEqual({ written: false, reason: "uncacheable" });
    const seen = await cache.inspect("user:9", "user:9");
    expect(seen.entry).toBeNull();
    expect(seen.version).toBe(2); // the version advanced: a load of version 1 cannot land
    // The same for a versioned null without negativeTtl, as a load of one is not cached either.
    await cache.writeThrough("user:9", { public: true }, 3, opts);
    expect(
      (await cache.set("user:9", null, { versionKey: "user:9", versionOf: () => 4 })).reason,
    ).toBe("uncacheable");
    expect((await cache.inspect("user:9", "user:9")).entry).toBeNull();
  });

  it("a write-through of null with negativeTtl lives negativeTtl, with no grace or fail-safe", async () => {
    const cache = h.cache();
    const written = await cache.writeThrough("user:10", null, 5, {
      negativeTtl: 5_000,
      ttl: 600_000,
      staleTtl: 600_000,
      failSafe: true,
    });
    expect(written.written).toBe(true);
    const seen = await cache.inspect("user:10", "user:10");
    expect(seen.entry?.value).toBeNull();
    expect(seen.pttl).toBeGreaterThan(0);
    expect(seen.pttl).toBeLessThanOrEqual(5_500); // it was stored for ttl + staleTtl + fail-safe
  });
});

describe("L1", () => {
  it("serves from memory within its bound and drops on local invalidation", async () => {
    const cache = h.cache({ l1: { ttlMs: 200 } });
    let loads = 0;
    const loader = async () => ++loads;
    await cache.getOrLoad("k", loader, { earlyRefresh: false });
    expect((await cache.getOrLoad("k", loader)).l1).toBe(true);
    await cache.invalidate("k");
    expect((await cache.getOrLoad("k", loader)).value).toBe(2);
    await sleep(250);
    expect((await cache.getOrLoad("k", loader)).l1).toBeUndefined();
    expect((await cache.stats()).l1_hits).toBe(1);
  });
});
