import { describe, expect, it } from "vitest";
import { FlightRegistry, KnownEntries, L1Cache } from "../../../src/cache";
import type { ScriptClient } from "../../../src/cache/redis";
import { hitScript } from "../../../src/cache/scripts";
import { type CacheHarness, gate, sleep, useWarmHarness } from "./harness";

/**
 * The per-isolate L1 (src/cache/l1.ts): bounded by `ttlMs` across isolates, but never past the
 * entry's own freshness, and this isolate's own writes and invalidations reach it at once, even
 * a reply that was on its way while they ran. Against real Redis through the gateway.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;

/** Passes calls through; once armed, holds the next hit.lua reply after Redis has run it. */
function holdingHits(inner: ScriptClient) {
  let armed: ReturnType<typeof gate<void>> | undefined;
  const ran = gate<void>();
  const client: ScriptClient = {
    async evalsha(sha, keys, args) {
      const reply = await inner.evalsha(sha, keys, args);
      if (armed && sha === hitScript.sha1) {
        const held = armed;
        armed = undefined;
        ran.load();
        await held.promise;
      }
      return reply;
    },
    eval: (s, k, a) => inner.eval(s, k, a),
  };
  const arm = () => {
    armed = gate<void>();
    return armed;
  };
  return { client, arm, ran: ran.started };
}

describe("L1Cache on its own", () => {
  it("serves for ttlMs, or for forMs when shorter, and stores nothing with forMs ≤ 0", () => {
    let t = 0;
    const l1 = new L1Cache(10, 1000, () => t);
    l1.set("a", 1, null, []);
    l1.set("b", 2, null, [], { forMs: 100 });
    l1.set("c", 3, null, [], { forMs: 5000 });
    l1.set("d", 4, null, [], { forMs: 0 });
    t = 99;
    expect([l1.get("a")?.value, l1.get("b")?.value, l1.get("c")?.value]).toEqual([1, 2, 3]);
    expect(l1.get("d")).toBeUndefined();
    t = 100;
    expect(l1.get("b")).toBeUndefined();
    t = 1000;
    expect(l1.get("a")).toBeUndefined();
    expect(l1.get("c")).toBeUndefined(); // ttlMs bounds it too
  });

  it("refuses a value read before anything was deleted (generation)", () => {
    const l1 = new L1Cache(10, 1000);
    for (const drop of [() => l1.delete("x"), () => l1.deleteTagged(["t"]), () => l1.clear()]) {
      const since = l1.generation;
      drop();
      l1.set("k", "old", null, [], { since });
      expect(l1.get("k")).toBeUndefined();
    }
    const since = l1.generation;
    l1.set("k", "current", null, [], { since });
    expect(l1.get("k")?.value).toBe("current");
  });

  it("stores a copy and hands each get its own copy: mutating one reaches neither L1 nor the next", () => {
    const l1 = new L1Cache(10, 1000);
    const stored = { name: "mug", notes: ["private"] };
    l1.set("k", stored, null, []);
    stored.notes.push("changed by the writer after set");
    const first = l1.get("k")?.value as typeof stored;
    first.notes.push("changed by a reader");
    expect(l1.get("k")?.value).toEqual({ name: "mug", notes: ["private"] });
    expect(l1.get("k")?.value).not.toBe(l1.get("k")?.value);
  });
});

describe("L1 in the engine", () => {
  it("a request that mutates its result changes nothing another request of the isolate reads from L1", async () => {
    const l1 = new L1Cache(100, 1000); // module scope: shared by the isolate's requests
    const prefix = `l1m${Math.random().toString(36).slice(2, 8)}`;
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    const request = () => h.cache({ l1, flights, known }, prefix);
    type Product = { name: string; internalNotes?: string; tags: string[] };
    const load = async (): Promise<Product> => ({ name: "mug", internalNotes: "62%", tags: ["a"] });
    const original = { name: "mug", internalNotes: "62%", tags: ["a"] };

    // The MISS answers the loader's object; it strips a private field and adds per-user data.
    const miss = await request().getOrLoad("product:1", load, noEarly);
    expect(miss.status).toBe("MISS");
    delete miss.value.internalNotes;
    miss.value.tags.push("user-specific");

    const hit = await request().getOrLoad("product:1", load, noEarly);
    expect(hit.l1).toBe(true);
    expect(hit.value).toEqual(original);
    // An L1 hit's value is the request's own too.
    hit.value.tags.push("another user");
    const next = await request().getOrLoad("product:1", load, noEarly);
    expect(next.l1).toBe(true);
    expect(next.value).toEqual(original);
  });

  it("a HIT keeps the entry's tagsOf tags in L1: this isolate's tag bump drops it", async () => {
    let t = 0;
    const cache = h.cache({ l1: new L1Cache(100, 1000, () => t) });
    let row = { id: 1, cat: 3, name: "old" };
    const opts = { ...noEarly, tagsOf: (p: typeof row) => [`category:${p.cat}`] };
    const load = async () => ({ ...row });
    expect((await cache.getOrLoad("p:1", load, opts)).status).toBe("MISS");
    t += 2000; // out of L1: the next read is a Redis HIT, put back into L1
    expect((await cache.getOrLoad("p:1", load, opts)).status).toBe("HIT");
    row = { ...row, name: "new" };
    await cache.invalidateTags("category:3");
    const after = await cache.getOrLoad("p:1", load, opts);
    expect(after.value.name).toBe("new");
    expect(after.l1).toBeUndefined();
  });

  it("a HIT whose reply arrives after this isolate's invalidation is acknowledged does not refill L1", async () => {
    let t = 0;
    const hold = holdingHits(h.redis as unknown as ScriptClient);
    const cache = h.cache({ l1: new L1Cache(100, 1000, () => t), redis: hold.client });
    let row = "v1";
    const load = async () => row;
    expect((await cache.getOrLoad("k", load, noEarly)).status).toBe("MISS");
    t += 2000; // out of L1; the isolate knows the entry fresh: the next read is hit.lua
    const held = hold.arm();
    const before = cache.getOrLoad("k", load, noEarly);
    await hold.ran; // the HIT ran in Redis, its reply is held
    row = "v2";
    await cache.invalidate("k");
    held.open();
    expect((await before).value).toBe("v1"); // began before the write: fine
    const after = await cache.getOrLoad("k", load, noEarly);
    expect(after.value).toBe("v2");
  });

  it("never serves past the entry's expiresAt, nor a negative entry past its negativeTtl", async () => {
    const cache = h.cache({ l1: new L1Cache(100, 1000) });
    let n = 0;
    const load = async () => ++n;
    const expiresAt = Date.now() + 150;
    expect((await cache.getOrLoad("sale", load, { ...noEarly, expiresAt })).value).toBe(1);
    expect((await cache.getOrLoad("sale", load, { ...noEarly, expiresAt })).l1).toBe(true);
    await sleep(300);
    const late = await cache.getOrLoad("sale", load, { ...noEarly, expiresAt: Date.now() + 5000 });
    expect(late.l1).toBeUndefined();
    expect(late.value).toBe(2);

    let found: string | null = null;
    const lookup = async () => found;
    const negative = { ...noEarly, negativeTtl: 150 };
    expect((await cache.getOrLoad("user:9", lookup, negative)).value).toBeNull();
    found = "created";
    await sleep(300);
    const again = await cache.getOrLoad("user:9", lookup, negative);
    expect(again.value).toBe("created");
  });

  it("a tagsOf that throws keeps the value out of L1 and out of Redis, and the read still answers", async () => {
    const cache = h.cache({ l1: new L1Cache(100, 1000) });
    const opts = {
      ...noEarly,
      tagsOf: (): string[] => {
        throw new Error("bad tagsOf");
      },
    };
    const first = await cache.getOrLoad("t:1", async () => "v", opts);
    expect(first).toMatchObject({ status: "MISS", value: "v" });
    await cache.settle(); // no fill is sent (the error is reported), the lease goes back
    const again = await cache.getOrLoad("t:1", async () => "v", opts);
    expect(again.l1).toBeUndefined();
    expect(again.value).toBe("v");
  });
});

/** Passes calls through; once armed with a script, holds its next call BEFORE it reaches Redis. */
function holdingBefore(inner: ScriptClient) {
  let armed: { sha: string; release: ReturnType<typeof gate<void>> } | undefined;
  const reached = gate<void>();
  const client: ScriptClient = {
    async evalsha(sha, keys, args) {
      if (armed && sha === armed.sha) {
        const { release } = armed;
        armed = undefined;
        reached.load();
        await release.promise;
      }
      return inner.evalsha(sha, keys, args);
    },
    eval: (s, k, a) => inner.eval(s, k, a),
  };
  const arm = (sha: string) => {
    armed = { sha, release: gate<void>() };
    return armed.release;
  };
  return { client, arm, reached: reached.started };
}

describe("an invalidation still on its way while a read of this isolate runs", () => {
  const cases = [
    ["invalidate", "invalidateScript"],
    ["invalidateTags", "bumpTagsScript"],
    ["apply", "applyScript"],
    ["bumpVersion", "bumpVersionScript"],
    ["purgePattern", "purgeScript"],
  ] as const;
  for (const [how, script] of cases) {
    it(`${how}: a read that began after the acknowledgement is not served the old value from L1`, async () => {
      const scripts = await import("../../../src/cache/scripts");
      const held = holdingBefore(h.redis as unknown as ScriptClient);
      let t = 0;
      const l1 = new L1Cache(100, 1000, () => t);
      const cache = h.cache({ l1, redis: held.client });
      let row = "v1";
      const load = async () => row;
      const opts = { ...noEarly, tags: ["grp"], versionKey: "item:k", versionOf: () => 1 };
      expect((await cache.getOrLoad("k", load, opts)).status).toBe("MISS");
      t += 2000; // out of L1 (its clock); Redis still holds the entry
      row = "v2";
      const release = held.arm(scripts[script].sha1);
      const ack =
        how === "invalidate"
          ? cache.invalidate("k")
          : how === "invalidateTags"
            ? cache.invalidateTags("grp")
            : how === "apply"
              ? cache.apply({ keys: ["k"] })
              : how === "bumpVersion"
                ? cache.bumpVersion("item", "k", 2)
                : cache.purgePattern("k", { budget: 1_000_000, count: 1_000_000 }); // one step scans all
      await held.reached;
      // A read overlapping the invalidation, which has not reached Redis: the old value is
      // right for it, and it goes into L1 (the invalidation's first drop came before it).
      expect((await cache.getOrLoad("k", load, opts)).value).toBe("v1");
      release.open();
      await ack;
      const after = await cache.getOrLoad("k", load, {
        ...opts,
        versionOf: () => (how === "bumpVersion" ? 2 : 1),
      });
      expect(after.value, `${after.status}, from L1: ${after.l1 === true}`).toBe("v2");
    });
  }
});

describe("tags L1 learned from the entry", () => {
  it("an entry whose tagsOf tag this reader only learned (need) leaves L1 when this isolate bumps that tag", async () => {
    // Found by a race audit: L1 kept the reader's own tags (and its tagsOf's), not the ones it
    // learned, so a route reading a key without tagsOf kept serving it after its own bump.
    const prefix = `lt${Date.now().toString(36)}`;
    const writer = h.cache({}, prefix);
    await writer.getOrLoad("p:1", async () => ({ v: 1, category: 3 }), {
      ...noEarly,
      tags: ["products"],
      tagsOf: (p: { category: number }) => [`category:${p.category}`],
    });
    const t = 0;
    const l1 = new L1Cache(100, 60_000, () => t);
    const reader = h.cache({ l1 }, prefix);
    const opts = { ...noEarly, tags: ["products"] };
    const first = await reader.getOrLoad("p:1", async () => ({ v: 2, category: 3 }), opts);
    expect(first).toMatchObject({ status: "HIT", value: { v: 1 } });
    expect((await reader.getOrLoad("p:1", async () => ({ v: 2, category: 3 }), opts)).l1).toBe(
      true,
    );
    await reader.invalidateTags("category:3");
    const after = await reader.getOrLoad("p:1", async () => ({ v: 2, category: 3 }), opts);
    expect(after.l1).toBeUndefined();
    expect(after.value).toEqual({ v: 2, category: 3 });
  });
});
