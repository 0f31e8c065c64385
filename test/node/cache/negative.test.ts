import { describe, expect, it } from "vitest";
import { type CacheHarness, gate, sleep, useWarmHarness } from "./harness";

/**
 * Negative entries (`negativeTtl`): a versioned "not found" is cached under the version the key
 * had when the lease was granted, so a create (version advance, key delete) makes the id visible
 * at once, and a create racing the load never leaves the negative entry behind.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

type Row = { id: number; v: number };
const opts = (id: number) => ({
  versionKey: `product:${id}`,
  versionOf: (p: Row | null) => p?.v ?? 0,
  negativeTtl: 30_000,
});

describe("negative entries", () => {
  it("caches a missing id: the second read is a HIT without the loader, one request", async () => {
    const cache = h.cache();
    let loads = 0;
    const loader = async () => {
      loads++;
      return null;
    };
    const first = await cache.getOrLoad<Row | null>("product:1", loader, opts(1));
    // The version it is cached under, as its HITs report it (it was null here before).
    expect(first).toMatchObject({ status: "MISS", value: null, version: 0 });
    await h.resetCounter();
    const second = await cache.getOrLoad<Row | null>("product:1", loader, opts(1));
    expect(second).toMatchObject({ status: "HIT", value: null, version: 0 });
    expect(loads).toBe(1);
    expect(await h.requests()).toBe(1);
    const seen = await cache.inspect("product:1", "product:1");
    expect(seen.entry?.version).toBe(0);
    // Short-lived and with no grace or fail-safe window.
    expect(seen.pttl).toBeGreaterThan(0);
    expect(seen.pttl).toBeLessThanOrEqual(33_000);
    expect(seen.entry?.staleUntil).toBe(seen.entry?.freshUntil);
    // Probing an unknown id leaves no version key (it would have no TTL).
    expect(seen.version).toBeNull();
  });

  it("a create (delete + version advance) makes the id visible on the next read", async () => {
    const cache = h.cache();
    await cache.getOrLoad<Row | null>("product:2", async () => null, opts(2));
    await cache.apply({ keys: ["product:2"], versions: { "product:2": 1 } });
    const next = await cache.getOrLoad<Row | null>(
      "product:2",
      async () => ({ id: 2, v: 1 }),
      opts(2),
    );
    expect(next).toMatchObject({ status: "MISS", value: { id: 2, v: 1 } });
  });

  it("a version advance alone (an outbox event naming only versions) invalidates it", async () => {
    const cache = h.cache();
    await cache.getOrLoad<Row | null>("product:3", async () => null, opts(3));
    expect((await cache.getOrLoad<Row | null>("product:3", async () => null, opts(3))).status).toBe(
      "HIT",
    );
    await cache.apply({ versions: { "product:3": 1 } });
    const next = await cache.getOrLoad<Row | null>(
      "product:3",
      async () => ({ id: 3, v: 1 }),
      opts(3),
    );
    expect(next).toMatchObject({ status: "MISS", value: { id: 3, v: 1 } });
    expect((await cache.stats()).invalidated_reads).toBe(1);
  });

  it("a deleted row is cached as not found under its last version; a later write revives it", async () => {
    const cache = h.cache();
    await cache.apply({ keys: ["product:4"], versions: { "product:4": 5 } }); // the delete, v5
    await cache.getOrLoad<Row | null>("product:4", async () => null, opts(4));
    const hit = await cache.getOrLoad<Row | null>("product:4", async () => null, opts(4));
    expect(hit).toMatchObject({ status: "HIT", value: null, version: 5 });
    await cache.apply({ versions: { "product:4": 6 } }); // restored as v6
    const next = await cache.getOrLoad<Row | null>(
      "product:4",
      async () => ({ id: 4, v: 6 }),
      opts(4),
    );
    expect(next.value).toEqual({ id: 4, v: 6 });
  });

  it("race: a read of a missing id racing a create never leaves the negative entry behind", async () => {
    // Every interleaving of the create's commit + apply with the read's lease, load and fill.
    // The reader loads "null" (its SELECT ran before the commit); the create is acknowledged
    // once its apply returned; after that, every read must see the row.
    for (const when of ["before-fill", "after-fill"] as const) {
      const cache = h.cache();
      const id = when === "before-fill" ? 10 : 11;
      const load = gate<Row | null>();
      const reading = cache.getOrLoad<Row | null>(`product:${id}`, load.load, opts(id));
      await load.started;
      if (when === "before-fill") {
        // The create commits and applies while the load is in flight.
        await cache.apply({ keys: [`product:${id}`], versions: { [`product:${id}`]: 1 } });
        load.open(null);
        expect((await reading).value).toBeNull(); // answered from before the create
      } else {
        load.open(null);
        await reading; // the negative entry landed...
        // ...and then the create is applied (only its version, the weakest event).
        await cache.apply({ versions: { [`product:${id}`]: 1 } });
      }
      const after = await cache.getOrLoad<Row | null>(
        `product:${id}`,
        async () => ({ id, v: 1 }),
        opts(id),
      );
      // Naive negative caching (store null, no lease/version guard) answers null here.
      expect(after.value).toEqual({ id, v: 1 });
    }
  });

  it("without negativeTtl a versioned null is still answered but not cached", async () => {
    const cache = h.cache();
    const { negativeTtl: _, ...plain } = opts(20);
    await cache.getOrLoad<Row | null>("product:20", async () => null, plain);
    expect((await cache.inspect("product:20")).entry).toBeNull();
  });

  it("cacheIf refuses a value: answered as MISS, lease released, nothing stored", async () => {
    const cache = h.cache();
    const r = await cache.getOrLoad("page:x", async () => ({ anchored: false }), {
      cacheIf: (p) => p.anchored,
    });
    expect(r).toMatchObject({ status: "MISS", value: { anchored: false } });
    const seen = await cache.inspect("page:x");
    expect(seen.entry).toBeNull();
    expect(seen.leasePttl).toBe(-2);
  });
});

describe("an entry at version 0 (no version key: nothing committed after it yet)", () => {
  type Versioned = { id: number; version: number };
  const v0 = {
    versionKey: "p:1",
    versionOf: (r: Versioned) => r.version,
    ttl: 50,
    staleTtl: 60_000,
    jitter: 0,
    earlyRefresh: false,
    waitBudget: 200,
  } as const;

  it('stays STALE for other isolates while one refreshes it (the refresh lease marks the version key "")', async () => {
    const prefix = `v0${Math.random().toString(36).slice(2, 8)}`;
    const a = h.cache({}, prefix);
    await a.getOrLoad("p:1", async () => ({ id: 1, version: 0 }), v0);
    await sleep(80); // past its fresh window, in grace
    const refresh = gate<Versioned>();
    expect((await a.getOrLoad("p:1", refresh.load, v0)).status).toBe("STALE");
    await refresh.started; // the background refresh holds the lease
    const b = h.cache({}, prefix); // another isolate
    const other = await b.getOrLoad("p:1", async () => ({ id: 1, version: 0 }), v0);
    expect(other.status).toBe("STALE");
    refresh.open({ id: 1, version: 0 });
    await a.settle();
    // A commit of version 1 still invalidates it.
    await a.apply({ versions: { "p:1": 1 } });
    const after = await h
      .cache({}, prefix)
      .getOrLoad("p:1", async () => ({ id: 1, version: 1 }), v0);
    expect(after).toMatchObject({ status: "MISS", value: { version: 1 } });
  });
});

describe("versions of 15 digits and more (microsecond timestamps)", () => {
  it("a negative entry stores the exact version the key had, so the next write still ends it", async () => {
    const cache = h.cache();
    type Versioned = { id: number; version: number };
    const current = 1_700_000_000_000_160; // below 2^53: exact in JavaScript and in Lua
    await cache.bumpVersion("p", 1, current); // e.g. the row was deleted at this version
    let row: Versioned | null = null;
    const negative = {
      versionKey: "p:1",
      versionOf: (r: Versioned | null) => r?.version ?? 0,
      negativeTtl: 60_000,
      earlyRefresh: false,
    } as const;
    expect((await cache.getOrLoad("p:1", async () => row, negative)).value).toBeNull();
    const seen = await cache.inspect("p:1", "p:1");
    expect(seen.entry?.version).toBe(current);
    expect(seen.version).toBe(current);
    row = { id: 1, version: current + 10 }; // re-created; its event carries the version only
    await cache.apply({ versions: { "p:1": current + 10 } });
    expect((await cache.getOrLoad("p:1", async () => row, negative)).value).toEqual(row);
  });
});
