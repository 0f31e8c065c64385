import { describe, expect, it } from "vitest";
import { KnownEntries } from "../../../src/cache";
import { keySpace } from "../../../src/cache/keys";
import { readHit } from "../../../src/cache/read/hit";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * The read-only hit declares every key it reads, tag counters included, but tags computed from
 * the value (`tagsOf`) are known only after a load. The client declares what it learned; the
 * script refuses (`need`) an entry whose tags it was not given, and the client asks once more.
 * These tests pin the cost of that protocol and that it fails closed.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

type Product = { id: number; category: number; version: number };
const opts = {
  earlyRefresh: false as const,
  tags: ["products"],
  tagsOf: (p: Product) => [`category:${p.category}`],
  versionKey: "product:1",
  versionOf: (p: Product) => p.version,
};
const fresh = () => `dt${Math.random().toString(36).slice(2, 10)}`;

describe("tags known only after loading (tagsOf)", () => {
  it("an isolate that never saw the entry asks twice once, then once per hit", async () => {
    const prefix = fresh();
    await h
      .cache({}, prefix)
      .getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    const known = new KnownEntries();
    // A new isolate whose first look at the key is a read-only hit (it saw it fresh before).
    known.learn(prefix, "product:1", { freshUntil: Date.now() + 60_000 });
    const reader = h.cache({ known }, prefix);
    await h.resetCounter();
    const first = await reader.getOrLoad("product:1", async () => null as never, opts);
    expect(first.status).toBe("HIT");
    expect(await h.requests()).toBe(2); // need ["products", "category:3"], then the hit
    expect(known.tags(prefix, "product:1")).toEqual(
      expect.arrayContaining(["products", "category:3"]),
    );
    await h.resetCounter();
    const second = await reader.getOrLoad("product:1", async () => null as never, opts);
    expect(second.status).toBe("HIT");
    expect(await h.requests()).toBe(1);
  });

  it("the isolate that filled the entry knows its tags: its next hit is one request", async () => {
    const prefix = fresh();
    const cache = h.cache({}, prefix);
    await cache.getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    await h.resetCounter();
    expect((await cache.getOrLoad("product:1", async () => null as never, opts)).status).toBe(
      "HIT",
    );
    expect(await h.requests()).toBe(1);
  });

  it("fails closed: a bump of the late tag invalidates the entry for an isolate that did not know it", async () => {
    const prefix = fresh();
    const writer = h.cache({}, prefix);
    await writer.getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    await writer.invalidateTags("category:3");
    const known = new KnownEntries();
    known.learn(prefix, "product:1", { freshUntil: Date.now() + 60_000 });
    let loads = 0;
    const reader = h.cache({ known }, prefix);
    const read = await reader.getOrLoad(
      "product:1",
      async () => {
        loads++;
        return { id: 1, category: 3, version: 1 };
      },
      opts,
    );
    expect(read.status).toBe("MISS");
    expect(loads).toBe(1);
  });

  it("fails closed: stale knowledge (the entry moved category) never serves it unchecked", async () => {
    const prefix = fresh();
    const a = h.cache({}, prefix);
    const knownB = new KnownEntries();
    const b = h.cache({ known: knownB }, prefix);
    await a.getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    expect((await b.getOrLoad("product:1", async () => null as never, opts)).status).toBe("HIT");
    expect(knownB.tags(prefix, "product:1")).toContain("category:3");
    // The product moves to category 4 (a write-through of version 2), then category 4 is bumped.
    await a.writeThrough("product:1", { id: 1, category: 4, version: 2 }, 2, opts);
    await a.invalidateTags("category:4");
    const read = await b.getOrLoad(
      "product:1",
      async () => ({ id: 1, category: 4, version: 2 }),
      opts,
    );
    // b declared category:3 only: the script asked for category:4, whose counter moved.
    expect(read.status).toBe("MISS");
    expect(knownB.tags(prefix, "product:1")).toContain("category:4");
  });

  it("a caller that declares nothing is never served a tagged entry", async () => {
    const prefix = fresh();
    await h
      .cache({}, prefix)
      .getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    const target = { redis: h.redis, keys: keySpace(prefix) };
    const blind = await readHit(target, "product:1", {
      versionKey: "product:1",
      tags: [],
      replica: false,
    });
    expect(blind.s).toBe("MISS");
    expect(blind.r).toBe("need");
    expect(blind.v).toBeUndefined();
    expect(blind.need?.sort()).toEqual(["category:3", "products"]);
    const told = await readHit(target, "product:1", {
      versionKey: "product:1",
      tags: ["products", "category:3"],
      replica: false,
    });
    expect(told.s).toBe("HIT");
  });

  it("a missing tag counter (evicted) makes the read-only hit a MISS and writes nothing", async () => {
    const prefix = fresh();
    await h
      .cache({}, prefix)
      .getOrLoad("product:1", async () => ({ id: 1, category: 3, version: 1 }), opts);
    const keys = keySpace(prefix);
    await h.redis.del(keys.tag("category:3"));
    const reply = await readHit({ redis: h.redis, keys }, "product:1", {
      versionKey: "product:1",
      tags: ["products", "category:3"],
      replica: true,
    });
    expect(reply).toMatchObject({ s: "MISS", r: "tag" });
    // Not recreated by the hit (it cannot write); the writing acquire recreates it.
    expect(await h.redis.exists(keys.tag("category:3"))).toBe(0);
    expect(await h.redis.exists(keys.entry("product:1"))).toBe(1);
  });
});

describe("a reader's own tags must be ones the entry was filled under", () => {
  const load = (value: string) => async () => value;

  it("an entry filled without the reader's tag is not served to it, so a bump of that tag reaches it", async () => {
    // Two isolates (their own known entries and flights), as two deploys side by side: the old
    // code fills the key with tag "a"; the new one reads it with tags "a" and "b".
    const prefix = fresh();
    const { FlightRegistry } = await import("../../../src/cache");
    const old = h.cache({ known: new KnownEntries(), flights: new FlightRegistry() }, prefix);
    const known = new KnownEntries();
    // The new isolate saw the key fresh before: its first look is the read-only hit.
    known.learn(prefix, "list:1", { freshUntil: Date.now() + 60_000 });
    const now = h.cache({ known, flights: new FlightRegistry() }, prefix);
    await old.getOrLoad("list:1", load("v1"), { tags: ["a"] });
    const first = await now.getOrLoad("list:1", load("v2"), { tags: ["a", "b"] });
    // Not the entry filled under "a" alone: a reload, filled under both.
    expect(first.status).toBe("MISS");
    expect(first.value).toBe("v2");
    expect((await now.getOrLoad("list:1", load("v3"), { tags: ["a", "b"] })).status).toBe("HIT");
    await now.invalidateTags("b");
    const after = await now.getOrLoad("list:1", load("v4"), { tags: ["a", "b"] });
    expect(after.status).toBe("MISS");
    expect(after.value).toBe("v4");
  });

  it("the same through the writing acquire (a key this isolate never saw), untagged entries too", async () => {
    const prefix = fresh();
    const writer = h.cache({}, prefix);
    await writer.getOrLoad("plain", load("v1"), {});
    const reader = h.cache({ known: new KnownEntries() }, prefix);
    const read = await reader.getOrLoad("plain", load("v2"), { tags: ["b"] });
    expect(read.status).toBe("MISS");
    expect(read.value).toBe("v2");
    await writer.invalidateTags("b");
    expect((await reader.getOrLoad("plain", load("v3"), { tags: ["b"] })).value).toBe("v3");
  });

  it("learned tags may be a subset: an entry with all the reader's own tags and more is served", async () => {
    const prefix = fresh();
    const writer = h.cache({}, prefix);
    await writer.getOrLoad("both", load("v1"), { tags: ["a", "b"] });
    const reader = h.cache({ known: new KnownEntries() }, prefix);
    const read = await reader.getOrLoad("both", load("v2"), { tags: ["a"] });
    expect(read.status).toBe("HIT"); // learned "b" through need, then served
    expect(read.value).toBe("v1");
  });
});
