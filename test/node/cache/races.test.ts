import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CacheHarness, cacheHarness, gate, sleep } from "./harness";

/**
 * The races a naive cache-aside loses, each against real Redis through the gateway.
 * Every test says what a naive implementation would do differently.
 */
let h: CacheHarness;
beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});

describe("stampede (single-flight leases)", () => {
  it("runs the loader once for 200 concurrent cold reads across 10 isolates", async () => {
    const prefix = `stampede${Date.now()}`;
    const isolates = Array.from({ length: 10 }, () => h.cache({}, prefix));
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(150);
      return { id: 1, name: "widget" };
    };
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        isolates[i % 10]?.getOrLoad("product:1", loader, { ttl: 60_000, waitBudget: 5_000 }),
      ),
    );
    // Naive cache-aside: 200 loads (or 10 with per-isolate coalescing alone).
    expect(loads).toBe(1);
    expect(results.every((r) => r?.value.name === "widget")).toBe(true);
    const statuses = results.map((r) => r?.status);
    expect(statuses.filter((s) => s === "MISS")).toHaveLength(20); // the holder's isolate
    expect(statuses.filter((s) => s === "HIT")).toHaveLength(180); // waited on the lease
    expect(results.some((r) => (r?.waitedMs ?? 0) > 0)).toBe(true);
    const stats = await isolates[0]?.stats();
    expect(stats?.lease_waits).toBe(9);
    expect(stats?.loads).toBe(1);
  });

  it("holds with in-isolate coalescing off: 200 Redis-level contenders, one load", async () => {
    const cache = h.cache({ coalesce: false });
    let loads = 0;
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        cache.getOrLoad(
          "hot",
          async () => {
            loads++;
            await sleep(100);
            return 42;
          },
          // A long lease: this test is about single flight among contenders, not takeover,
          // and 200 pollers in one process can slow the holder's fill on a busy machine.
          { waitBudget: 30_000, leaseTtl: 20_000 },
        ),
      ),
    );
    expect(loads).toBe(1);
    expect(results.every((r) => r.value === 42)).toBe(true);
  });

  it("lets others take over after the lease TTL when the holder dies", async () => {
    const prefix = `dead${Date.now()}`;
    const dying = h.cache({}, prefix);
    const survivor = h.cache({}, prefix);
    // The holder's loader never finishes (a Worker killed mid-load): its lease just expires.
    const hung = gate<string>(); // never opened
    void dying.getOrLoad("k", hung.load, { leaseTtl: 300 });
    await hung.started;
    const inspected = await survivor.inspect("k");
    expect(inspected.leasePttl).toBeGreaterThan(0);
    const started = Date.now();
    const result = await survivor.getOrLoad("k", async () => "fresh", {
      leaseTtl: 300,
      waitBudget: 3_000,
    });
    expect(result.value).toBe("fresh");
    expect(result.status).toBe("MISS"); // it took the lease over and loaded
    expect(Date.now() - started).toBeLessThan(3_000); // not the wait budget: the lease TTL
    expect((await survivor.getOrLoad("k", async () => "again")).status).toBe("HIT");
  });

  it("loads without the lease once the wait budget is spent, and never fills", async () => {
    const prefix = `budget${Date.now()}`;
    const slow = h.cache({}, prefix);
    const impatient = h.cache({}, prefix);
    const held = gate<string>();
    const holder = slow.getOrLoad("k", held.load, { leaseTtl: 10_000 });
    await held.started;
    const result = await impatient.getOrLoad("k", async () => "direct", { waitBudget: 200 });
    expect(result.value).toBe("direct");
    expect((await impatient.inspect("k")).entry).toBeNull();
    held.open("holder");
    expect((await holder).value).toBe("holder");
    expect((await impatient.stats()).lease_timeouts).toBe(1);
  });
});

describe("stale set (a load that began before an invalidation never lands)", () => {
  it("drops the fill when the key is invalidated during the load", async () => {
    const cache = h.cache();
    const load = gate<string>();
    const reading = cache.getOrLoad("user:7", load.load);
    await load.started;
    await cache.invalidate("user:7"); // the writer committed v2 and invalidated
    load.open("v1 (read before the write)");
    expect((await reading).value).toBe("v1 (read before the write)");
    // Naive cache-aside would now serve v1 until its TTL.
    const next = await cache.getOrLoad("user:7", async () => "v2");
    expect(next.status).toBe("MISS");
    expect(next.value).toBe("v2");
    expect((await cache.stats()).dropped_lease).toBe(1);
  });

  it("drops the fill when the version is bumped during the load", async () => {
    const cache = h.cache();
    const load = gate<{ v: number }>();
    const opts = { versionKey: "product:9", versionOf: (p: { v: number }) => p.v };
    const reading = cache.getOrLoad("product:9", load.load, opts);
    await load.started;
    await cache.bumpVersion("product", 9, 2);
    load.open({ v: 1 });
    await reading;
    const next = await cache.getOrLoad("product:9", async () => ({ v: 2 }), opts);
    expect(next.status).toBe("MISS");
    expect(next.value).toEqual({ v: 2 });
    // The bump revokes the lease, so the fill is refused by the lease check before the version.
    const stats = await cache.stats();
    expect((stats.dropped_lease ?? 0) + (stats.dropped_version ?? 0)).toBe(1);
  });

  it("drops the fill when a tag is bumped during the load", async () => {
    const cache = h.cache();
    const load = gate<string[]>();
    const opts = { tags: ["category:3"] };
    const reading = cache.getOrLoad("list:category:3", load.load, opts);
    await load.started;
    await cache.invalidateTags("category:3");
    load.open(["old"]);
    await reading;
    const next = await cache.getOrLoad("list:category:3", async () => ["new"], opts);
    expect(next.status).toBe("MISS");
    expect(next.value).toEqual(["new"]);
    expect((await cache.stats()).dropped_tag).toBe(1);
  });
});

describe("monotonic versions", () => {
  const opts = { versionKey: "user:1", versionOf: (u: { v: number }) => u.v };

  it("never lets a late write of v2 replace v3", async () => {
    const cache = h.cache();
    expect(await cache.writeThrough("user:1", { v: 3 }, 3, opts)).toEqual({ written: true });
    expect(await cache.writeThrough("user:1", { v: 2 }, 2, opts)).toEqual({
      written: false,
      reason: "version",
    });
    const read = await cache.getOrLoad("user:1", async () => ({ v: 0 }), opts);
    expect(read.status).toBe("HIT");
    expect(read.value).toEqual({ v: 3 });
    expect(read.version).toBe(3);
  });

  it("never lets a late fill of v2 replace a write-through of v3", async () => {
    const cache = h.cache();
    const load = gate<{ v: number }>();
    const reading = cache.getOrLoad("user:1", load.load, opts);
    await load.started;
    await cache.writeThrough("user:1", { v: 3 }, 3, opts);
    load.open({ v: 2 });
    await reading;
    const entry = await cache.inspect("user:1", "user:1");
    expect(entry.entry?.value).toEqual({ v: 3 });
    expect(entry.version).toBe(3);
  });

  it("ignores a duplicated or out-of-order version event", async () => {
    const cache = h.cache();
    expect(await cache.bumpVersion("user", 5, 4)).toEqual({ previous: null, current: 4 });
    expect(await cache.bumpVersion("user", 5, 3)).toEqual({ previous: 4, current: 4 });
    expect(await cache.bumpVersion("user", 5, 4)).toEqual({ previous: 4, current: 4 });
    expect(await cache.bumpVersion("user", 5, 6)).toEqual({ previous: 4, current: 6 });
  });

  it("treats an entry below the known version as a miss (a bump without a purge)", async () => {
    const cache = h.cache();
    await cache.writeThrough("user:8", { v: 1 }, 1, { ...opts, versionKey: "user:8" });
    await cache.bumpVersion("user", 8, 2);
    const read = await cache.getOrLoad("user:8", async () => ({ v: 2 }), {
      ...opts,
      versionKey: "user:8",
    });
    expect(read.status).toBe("MISS");
    expect(read.value).toEqual({ v: 2 });
  });

  it("distrusts a versioned entry whose version key was evicted", async () => {
    const cache = h.cache();
    const o = { ...opts, versionKey: "user:9" };
    await cache.writeThrough("user:9", { v: 5 }, 5, o);
    await h.redis.del(cache.keys.version("user:9"));
    expect((await cache.getOrLoad("user:9", async () => ({ v: 5 }), o)).status).toBe("MISS");
  });
});

describe("tags", () => {
  it("invalidates every entry under a tag in one request, whatever their number", async () => {
    const cache = h.cache();
    const load = (v: string) => async () => v;
    for (let i = 0; i < 300; i++) {
      await cache.getOrLoad(`p:${i}`, load(`a${i}`), { tags: ["category:1", "products"] });
    }
    await cache.getOrLoad("p:other", load("b"), { tags: ["category:2"] });
    await h.resetCounter();
    await cache.invalidateTags("category:1");
    expect(await h.requests()).toBe(1);
    const after = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        cache.getOrLoad(`p:${i}`, load(`new${i}`), { tags: ["category:1", "products"] }),
      ),
    );
    expect(after.every((r, i) => r.status === "MISS" && r.value === `new${i}`)).toBe(true);
    expect((await cache.getOrLoad("p:other", load("x"), { tags: ["category:2"] })).status).toBe(
      "HIT",
    );
  });

  it("revalidates against the tags the entry was stored with, even if a reader omits them", async () => {
    const cache = h.cache();
    await cache.getOrLoad("k", async () => 1, { tags: ["t1"] });
    await cache.invalidateTags("t1");
    expect((await cache.get("k"))?.value).toBeUndefined();
  });

  it("keeps entries invalid after a tag counter is evicted and recreated", async () => {
    const cache = h.cache();
    await cache.getOrLoad("k", async () => 1, { tags: ["t"] });
    await h.redis.del(cache.keys.tag("t")); // eviction under memory pressure
    expect((await cache.getOrLoad("k", async () => 2, { tags: ["t"] })).status).toBe("MISS");
  });
});

describe("stale-while-revalidate", () => {
  it("answers STALE at once in the grace window and runs exactly one background refresh", async () => {
    const prefix = `swr${Date.now()}`;
    const isolates = Array.from({ length: 5 }, () => h.cache({}, prefix));
    let loads = 0;
    const refresh = gate<void>();
    const loader = async () => {
      loads++;
      if (loads > 1) await refresh.promise;
      return `v${loads}`;
    };
    const opts = { ttl: 150, staleTtl: 30_000, jitter: 0, earlyRefresh: false as const };
    await isolates[0]?.getOrLoad("k", loader, opts);
    await sleep(250);
    const background: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => {
      background.push(p);
    };
    const reads = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        isolates[i % 5]?.getOrLoad("k", loader, { ...opts, waitUntil }),
      ),
    );
    // All answered while the refresh was still blocked: nobody waited for the loader.
    expect(reads.every((r) => r?.status === "STALE" && r.value === "v1")).toBe(true);
    refresh.open();
    await Promise.all(background);
    expect(loads).toBe(2);
    const after = await isolates[1]?.getOrLoad("k", loader, opts);
    expect(after?.status).toBe("HIT");
    expect(after?.value).toBe("v2");
  });
});

describe("fail-safe", () => {
  it("serves the expired entry when the loader fails, and records it", async () => {
    const cache = h.cache();
    const opts = { ttl: 100, jitter: 0, failSafe: 60_000, earlyRefresh: false as const };
    await cache.getOrLoad("k", async () => "last good", opts);
    await sleep(200);
    const result = await cache.getOrLoad(
      "k",
      async () => {
        throw new Error("postgres down");
      },
      opts,
    );
    expect(result.value).toBe("last good");
    expect(result.status).toBe("STALE");
    expect(result.failSafe).toBe(true);
    expect((await cache.stats()).fail_safe).toBe(1);
    // The failed loader gave its lease back: the next caller loads at once.
    expect((await cache.inspect("k")).leasePttl).toBe(-2);
  });

  it("propagates the loader's error when there is nothing to fall back to", async () => {
    const cache = h.cache();
    await expect(
      cache.getOrLoad("k", async () => {
        throw new Error("postgres down");
      }),
    ).rejects.toThrow("postgres down");
  });
});

describe("Redis down", () => {
  it("reads bypass to the loader; writes and invalidations report the failure", async () => {
    const cache = h.cache();
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    try {
      const result = await cache.getOrLoad("k", async () => "from postgres");
      expect(result).toMatchObject({ status: "BYPASS", value: "from postgres" });
      await expect(cache.invalidate("k")).rejects.toThrow(/cache invalidate failed/);
      await expect(cache.invalidateTags("t")).rejects.toThrow(/cache invalidateTags failed/);
      await expect(cache.writeThrough("k", 1, 1)).rejects.toThrow(/writeThrough failed/);
      // Refused as uncacheable, it deletes the entry instead (apply's request): still its own
      // failure, for the caller's logs and onError, which named "apply" here.
      const uncacheable = { cacheIf: (v: number) => v > 0 };
      await expect(cache.writeThrough("k", 0, 2, uncacheable)).rejects.toMatchObject({
        operation: "writeThrough",
      });
      await expect(cache.bumpVersion("user", 1, 2)).rejects.toThrow(/bumpVersion failed/);
      await h.faults({ failRate: 1, failMode: "drop" });
      expect((await cache.getOrLoad("k", async () => "again")).status).toBe("BYPASS");
    } finally {
      await h.clearFaults();
    }
    // Counted while Redis was down, delivered with the next request.
    const stats = await cache.stats();
    expect(stats.bypass).toBe(2);
    expect(stats.redis_errors).toBeGreaterThanOrEqual(6);
  });

  it("does not turn a loader failure into a cache error while Redis is down", async () => {
    const cache = h.cache();
    await h.faults({ failRate: 1 });
    try {
      await expect(
        cache.getOrLoad("k", async () => {
          throw new Error("not found");
        }),
      ).rejects.toThrow("not found");
    } finally {
      await h.clearFaults();
    }
  });
});

describe("values the cache cannot hold", () => {
  it("answers but does not cache undefined, nor null under a version key", async () => {
    const cache = h.cache();
    expect((await cache.getOrLoad("u", async () => undefined)).value).toBeUndefined();
    expect((await cache.inspect("u")).entry).toBeNull();
    expect((await cache.inspect("u")).leasePttl).toBe(-2);
    const versioned = {
      versionKey: "product:404",
      versionOf: (p: { v: number } | null) => p?.v ?? 0,
    };
    const missing = await cache.getOrLoad<{ v: number } | null>(
      "product:404",
      async () => null,
      versioned,
    );
    expect(missing.value).toBeNull();
    expect((await cache.inspect("product:404")).entry).toBeNull();
    // Unversioned null is negative caching: it is stored.
    await cache.getOrLoad("absent", async () => null);
    expect((await cache.getOrLoad("absent", async () => "x")).status).toBe("HIT");
  });

  it("requires versionOf with versionKey", async () => {
    const cache = h.cache();
    await expect(cache.getOrLoad("k", async () => 1, { versionKey: "k" })).rejects.toThrow(
      /versionOf/,
    );
  });
});

describe("review findings (each failed before its fix)", () => {
  it("a pattern purge also revokes leases, so a load in flight cannot land afterwards", async () => {
    const cache = h.cache();
    const load = gate<string>();
    const reading = cache.getOrLoad("session:1", load.load);
    await load.started;
    let step = await cache.purgePattern("session:*");
    while (!step.done) step = await cache.purgePattern("session:*", { cursor: step.cursor });
    load.open("read before the purge");
    await reading;
    expect((await cache.getOrLoad("session:1", async () => "after")).value).toBe("after");
  });

  it("fail-safe never serves a value past its absolute expiry", async () => {
    const cache = h.cache();
    const expiresAt = Date.now() + 150;
    await cache.getOrLoad("sale", async () => "20% off", {
      ttl: 50,
      jitter: 0,
      failSafe: 60_000,
      expiresAt,
      earlyRefresh: false,
    });
    await sleep(250);
    await expect(
      cache.getOrLoad(
        "sale",
        async () => {
          throw new Error("db down");
        },
        { failSafe: 60_000 },
      ),
    ).rejects.toThrow("db down");
  });

  it("L1 does not keep a value whose fill another isolate's invalidation refused", async () => {
    const prefix = `l1r${Date.now()}`;
    const a = h.cache({ l1: { ttlMs: 5_000 } }, prefix);
    const b = h.cache({}, prefix);
    const load = gate<string>();
    const reading = a.getOrLoad("k", load.load);
    await load.started;
    await b.invalidate("k");
    load.open("old");
    await reading;
    const next = await a.getOrLoad("k", async () => "new");
    expect(next.l1).toBeUndefined();
    expect(next.value).toBe("new");
  });

  it("a coalesced caller stops waiting for a hung loader after the wait budget", async () => {
    const cache = h.cache();
    const hung = gate<string>(); // never opened
    void cache.getOrLoad("k", hung.load, { leaseTtl: 60_000 });
    await hung.started;
    const result = await cache.getOrLoad("k", async () => "own load", { waitBudget: 200 });
    expect(result.value).toBe("own load");
  });

  it("lease polls are neither misses nor hot-key samples", async () => {
    const prefix = `poll${Date.now()}`;
    // decay 1: a minute boundary between the reads and hotKeys() would otherwise halve the
    // score (both samples one window old), which once failed this test in CI.
    const hotKeys = { sampleRate: 1, decay: 1 };
    const holder = h.cache({ hotKeys }, prefix);
    const waiter = h.cache({ hotKeys }, prefix);
    const load = gate<string>();
    const first = holder.getOrLoad("k", load.load);
    await load.started;
    const second = waiter.getOrLoad("k", async () => "x", { waitBudget: 5_000 });
    await sleep(300); // several polls
    load.open("v");
    await Promise.all([first, second]);
    const stats = await holder.stats();
    expect(stats.misses).toBe(2);
    expect((await holder.hotKeys(1))[0]?.score).toBe(2);
  });

  it("a version bump revokes the lease: an evicted version key cannot let an old fill back", async () => {
    const cache = h.cache();
    const opts = { versionKey: "user:77", versionOf: (u: { v: number }) => u.v };
    const load = gate<{ v: number }>();
    const reading = cache.getOrLoad("user:77", load.load, opts);
    await load.started;
    await cache.bumpVersion("user", 77, 2);
    await h.redis.del(cache.keys.version("user:77")); // evicted under memory pressure
    load.open({ v: 1 });
    await reading;
    expect((await cache.inspect("user:77", "user:77")).entry).toBeNull();
  });

  it("caller bugs are TypeErrors, not cache faults", async () => {
    const cache = h.cache();
    await expect(cache.set("k", 1, { versionKey: "k" })).rejects.toThrow(TypeError);
    await expect(cache.bumpVersion("bad tag", 1, 1)).rejects.toThrow(/Invalid cache/);
  });
});

describe("tags known only after loading (tagsOf)", () => {
  type Product = { id: number; categoryId: number; categoryName: string };
  const opts = { tagsOf: (p: Product) => [`category:${p.categoryId}`] };

  it("drops the fill when the value's tag is bumped during the load", async () => {
    const cache = h.cache();
    const load = gate<Product>();
    const reading = cache.getOrLoad("product:5", load.load, opts);
    await load.started;
    await cache.invalidateTags("category:9"); // the category was renamed meanwhile
    load.open({ id: 5, categoryId: 9, categoryName: "old name" });
    await reading;
    const next = await cache.getOrLoad(
      "product:5",
      async () => ({ id: 5, categoryId: 9, categoryName: "new name" }),
      opts,
    );
    expect(next.status).toBe("MISS");
    expect(next.value.categoryName).toBe("new name");
  });

  it("stores the late tag so a later bump invalidates the entry", async () => {
    const cache = h.cache();
    const load = async () => ({ id: 6, categoryId: 3, categoryName: "a" });
    await cache.getOrLoad("product:6", load, opts);
    expect((await cache.getOrLoad("product:6", load, opts)).status).toBe("HIT");
    expect(Object.keys((await cache.inspect("product:6")).currentTags)).toEqual(["category:3"]);
    await cache.invalidateTags("category:3");
    expect((await cache.getOrLoad("product:6", load, opts)).status).toBe("MISS");
  });

  it("refuses a write of data loaded before a tag bump (the warmer's race)", async () => {
    const cache = h.cache();
    const { now: loadedAt } = await cache.freshness(["product:7"]);
    await sleep(5);
    await cache.invalidateTags("category:4");
    const write = await cache.writeThrough(
      "product:7",
      { id: 7, categoryId: 4, categoryName: "old" },
      null,
      { ...opts, tagsAsOf: loadedAt },
    );
    expect(write).toEqual({ written: false, reason: "tag" });
    const fresh = await cache.writeThrough(
      "product:7",
      { id: 7, categoryId: 4, categoryName: "new" },
      null,
      { ...opts, tagsAsOf: (await cache.freshness(["product:7"])).now },
    );
    expect(fresh.written).toBe(true);
  });
});

describe("fail-safe for a waiter that gave up on the lease", () => {
  it("serves the expired entry when its own load fails too", async () => {
    const prefix = `fsw${Date.now()}`;
    const holder = h.cache({}, prefix);
    const waiter = h.cache({}, prefix);
    const opts = { ttl: 50, jitter: 0, failSafe: 60_000, earlyRefresh: false as const };
    await holder.getOrLoad("k", async () => "last good", opts);
    await sleep(120); // past fresh and grace: kept only for fail-safe
    const hung = gate<string>(); // the holder's reload never finishes
    void holder.getOrLoad("k", hung.load, { ...opts, leaseTtl: 60_000 });
    await hung.started;
    const result = await waiter.getOrLoad(
      "k",
      async () => {
        throw new Error("postgres down");
      },
      { ...opts, waitBudget: 150 },
    );
    expect(result).toMatchObject({ value: "last good", status: "STALE", failSafe: true });
  });

  it("reports a MISS's windows capped at expiresAt", async () => {
    const cache = h.cache();
    const r = await cache.getOrLoad("sale", async () => 1, {
      ttl: 60_000,
      staleTtl: 60_000,
      expiresAt: Date.now() + 5_000,
    });
    expect(r.ttlMs).toBeLessThanOrEqual(5_000);
    expect(r.staleTtlMs).toBeLessThanOrEqual(5_000);
  });
});
