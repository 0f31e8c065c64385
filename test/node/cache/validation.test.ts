import { describe, expect, it } from "vitest";
import { EdgeCache, InvalidKeyError } from "../../../src/cache/index";
import { keySpace } from "../../../src/cache/keys";
import { resolveOptions } from "../../../src/cache/options";
import { storeEntry } from "../../../src/cache/write/fill";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Caller bugs throw before any request, and nothing a caller passes can leave an entry half
 * written. Each case here used to reach Redis: a fractional duration made fill.lua fail after
 * its HSET (the entry stayed, without an expiry, and an older load could overwrite it), NaN
 * versions and purge options came back as CacheWriteError ("use the outbox": an outbox event
 * carrying one was retried forever), a bad lease time turned every read into a BYPASS, and
 * lone surrogates made different keys one Redis key.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

describe("durations", () => {
  it("a fraction is rounded to whole ms: the write lands with its expiry and revokes the lease", async () => {
    const cache = h.cache();
    const keys = keySpace(cache.keys.prefix);
    await h.redis.set(keys.lease("cfg"), "someone.1.1");
    const written = await cache.set("cfg", "new", {
      ttl: 60_000.4,
      staleTtl: 1500.5,
      failSafe: 0.5,
      jitter: 0, // the expiry asserted below is the ttl's, not a jittered one
    });
    expect(written).toEqual({ written: true });
    expect(await h.redis.pttl(keys.entry("cfg"))).toBeGreaterThan(60_000);
    expect(await h.redis.get(keys.lease("cfg"))).toBeNull();
    const opts = resolveOptions("k", {}, { ttl: 10.6, leaseTtl: 999.5, expiresAt: 1e12 + 0.7 });
    expect([opts.ttl, opts.leaseTtl, opts.expiresAtMs]).toEqual([11, 1000, 1e12]);
  });

  it("fill.lua itself takes whole ms of anything it is sent, so it never fails after writing", async () => {
    const cache = h.cache();
    const keys = keySpace(cache.keys.prefix);
    const reply = await storeEntry({ redis: h.redis, keys }, "raw", {
      token: "",
      json: '"v"',
      version: null,
      freshMs: 1000.5,
      graceMs: 10.25,
      expiresAtMs: Date.now() + 5_000.5,
      failSafeMs: 0.5,
      tags: [],
      loadMs: 1.5,
      id: "id1",
    });
    expect(reply.ok).toBe(true);
    expect(await h.redis.pttl(keys.entry("raw"))).toBeGreaterThan(0);
  });

  it.each([
    ["ttl NaN", { ttl: Number.NaN }, TypeError],
    ["ttl Infinity", { ttl: Number.POSITIVE_INFINITY }, TypeError],
    ["ttl 0", { ttl: 0 }, RangeError],
    ["ttl negative", { ttl: -1000 }, RangeError],
    ["ttl of a century", { ttl: 100 * 365 * 86_400_000 }, RangeError],
    ["staleTtl negative", { staleTtl: -5000 }, RangeError],
    ["leaseTtl 0", { leaseTtl: 0 }, RangeError],
    ["leaseTtl NaN", { leaseTtl: Number.NaN }, TypeError],
    ["waitBudget NaN", { waitBudget: Number.NaN }, TypeError],
    ["waitBudget negative", { waitBudget: -1 }, RangeError],
    ["failSafe negative", { failSafe: -5000 }, RangeError],
    ["jitter 2", { jitter: 2 }, RangeError],
    ["jitter NaN", { jitter: Number.NaN }, RangeError],
    ["expiresAt Invalid Date", { expiresAt: new Date(Number.NaN) }, TypeError],
    ["tagsAsOf NaN", { tagsAsOf: Number.NaN }, TypeError],
    ["beta negative", { earlyRefresh: { beta: -1 } }, RangeError],
    ["loaderBackoff NaN", { loaderBackoff: Number.NaN }, TypeError],
  ] as const)("%s throws before any request, for reads and writes", async (_, options, type) => {
    const cache = h.cache();
    await h.resetCounter();
    await expect(cache.getOrLoad("k", async () => 1, options)).rejects.toThrow(type);
    await expect(cache.set("k", 1, options)).rejects.toThrow(type);
    expect(await h.requests()).toBe(0);
  });

  it("a negativeTtl of zero or less still means off", () => {
    expect(resolveOptions("k", {}, { negativeTtl: -1 }).negativeTtl).toBe(-1);
    expect(resolveOptions("k", {}, { negativeTtl: 0 }).negativeTtl).toBe(0);
  });
});

describe("versions", () => {
  it("NaN, Infinity or a negative version throws before any request; nothing is applied", async () => {
    const cache = h.cache();
    await cache.set("p:1", "v", { versionKey: "p:1", versionOf: () => 3 });
    await h.resetCounter();
    await expect(
      cache.apply({ keys: ["p:1"], tags: ["t"], versions: { "p:1": Number.NaN } }),
    ).rejects.toThrow(TypeError);
    await expect(cache.bumpVersion("p", 1, Number.POSITIVE_INFINITY)).rejects.toThrow(TypeError);
    await expect(cache.writeThrough("p:1", "x", Number.NaN)).rejects.toThrow(TypeError);
    await expect(cache.writeThrough("p:1", "x", -1)).rejects.toThrow(TypeError);
    expect(await h.requests()).toBe(0);
    expect((await cache.get("p:1", { versionKey: "p:1" }))?.value).toBe("v");
    // A numeric string, as JavaScript callers may pass, still counts as its number.
    expect(await cache.writeThrough("p:1", "w", "4" as unknown as number)).toEqual({
      written: true,
    });
  });
});

describe("names", () => {
  it("a lone UTF-16 surrogate is refused (it used to merge distinct keys into one)", async () => {
    const cache = h.cache();
    await h.resetCounter();
    for (const key of ["a\uD800", "a\uDC00", "x\uDBFFy"]) {
      await expect(cache.get(key)).rejects.toThrow(InvalidKeyError);
      await expect(cache.set(key, 1)).rejects.toThrow(InvalidKeyError);
    }
    await expect(cache.set("ok", 1, { tags: ["t\uD800"] })).rejects.toThrow(InvalidKeyError);
    await expect(cache.purgePattern("a\uD800*")).rejects.toThrow(InvalidKeyError);
    expect(await h.requests()).toBe(0);
    // A well-formed pair (one astral character) is a name like any other.
    expect(await cache.set("a\uD83D\uDE00", 1)).toEqual({ written: true });
    expect((await cache.get("a\uD83D\uDE00"))?.value).toBe(1);
  });
});

describe("untyped input (a queue message's JSON, a JavaScript caller)", () => {
  // biome-ignore lint/suspicious/noExplicitAny: untyped input is what these cases are about
  type Any = any;

  it("a name that is not a string throws InvalidKeyError before any request", async () => {
    const cache = h.cache();
    const invalidate = cache.invalidate.bind(cache) as (...keys: unknown[]) => Promise<number>;
    const invalidateTags = cache.invalidateTags.bind(cache) as (
      ...tags: unknown[]
    ) => Promise<unknown>;
    await h.resetCounter();
    await expect(cache.getOrLoad(undefined as Any, async () => 1)).rejects.toThrow(InvalidKeyError);
    await expect(cache.getOrLoad(42 as Any, async () => 1)).rejects.toThrow(InvalidKeyError);
    await expect(cache.get(null as Any)).rejects.toThrow(InvalidKeyError);
    await expect(cache.set("k", 1, { tags: [undefined as Any] })).rejects.toThrow(InvalidKeyError);
    // An array where rest arguments belong used to become the name "k1,k2".
    await expect(invalidate(["k1", "k2"])).rejects.toThrow(InvalidKeyError);
    await expect(invalidateTags(["a", "b"])).rejects.toThrow(InvalidKeyError);
    await expect(cache.apply({ keys: [7 as Any] })).rejects.toThrow(InvalidKeyError);
    await expect(cache.purgePattern(undefined as Any)).rejects.toThrow(InvalidKeyError);
    expect(await h.requests()).toBe(0);
  });

  it("apply() with a string or an object where a list belongs throws a TypeError before any request", async () => {
    const cache = h.cache();
    await cache.set("product:1", "old", { tags: ["products"] });
    await h.resetCounter();
    for (const event of [
      '{"keys":"product:1"}',
      '{"tags":"products"}',
      '{"keys":{"0":"product:1"}}',
      '{"versions":[["product:1",2]]}',
      '{"versions":"product:1"}',
    ]) {
      await expect(cache.apply(JSON.parse(event)), event).rejects.toThrow(TypeError);
    }
    await expect(
      cache.getOrLoad("list", async () => 1, { tags: "products" as Any }),
    ).rejects.toThrow(TypeError);
    expect(await h.requests()).toBe(0);
    expect((await cache.get("product:1"))?.value).toBe("old");
    // The same event as lists (and null for an absent part) goes through.
    const applied = await cache.apply(JSON.parse('{"keys":["product:1"],"tags":null}'));
    expect(applied).toEqual({ removed: 1, tagsBumped: 0, versionsAdvanced: 0 });
  });

  it("misused calls throw what to do instead, before any request (a library audit's list)", async () => {
    const cache = h.cache();
    await h.resetCounter();
    // bumpVersion with no id used to advance the version key "product:undefined".
    for (const id of [undefined, null, "", Number.NaN]) {
      await expect(cache.bumpVersion("product", id as Any, 7), String(id)).rejects.toThrow(
        /bumpVersion product: id must be a string or a number/,
      );
    }
    // A list or nothing where the event belongs ("Cannot read properties of undefined").
    await expect(cache.apply(["product:1"] as Any)).rejects.toThrow(
      "apply takes { keys?, tags?, versions? }, got an array",
    );
    await expect(cache.apply(undefined as Any)).rejects.toThrow(TypeError);
    // One key where the list belongs ("list.map is not a function").
    await expect(cache.freshness("product:1" as Any)).rejects.toThrow(
      "freshness takes an array of keys, got string",
    );
    // A cursor that is not the string a step returned.
    await expect(cache.purgePattern("p:*", { cursor: 5 as Any })).rejects.toThrow(TypeError);
    // Options a read would have taken silently.
    const load = async () => 1;
    await expect(cache.getOrLoad("k", load, { consistency: "eventual" as Any })).rejects.toThrow(
      'consistency must be "strict" or "replica", got eventual',
    );
    await expect(cache.getOrLoad("k", load, { waitUntil: "x" as Any })).rejects.toThrow(
      /waitUntil must be a function/,
    );
    // Epoch seconds where ms belong: a date in 1970, so the value was never cached.
    const inAnHour = Math.floor(Date.now() / 1000) + 3600;
    await expect(cache.getOrLoad("k", load, { expiresAt: inAnHour })).rejects.toThrow(
      /looks like seconds: multiply by 1000/,
    );
    await expect(cache.set("k", 1, { expiresAt: inAnHour })).rejects.toThrow(RangeError);
    expect(await h.requests()).toBe(0);
    // Ms and a Date still work.
    const ms = await cache.getOrLoad("k", load, { expiresAt: inAnHour * 1000 });
    expect(ms.status).toBe("MISS");
    expect((await cache.set("k2", 1, { expiresAt: new Date(inAnHour * 1000) })).written).toBe(true);
  });

  it("a versionOf giving a numeric string answers the number its type says", async () => {
    const cache = h.cache();
    const row = { id: 1, version: "3" };
    const opts = { versionKey: "row:1", versionOf: (r: typeof row) => r.version as Any as number };
    const miss = await cache.getOrLoad("row:1", async () => row, opts);
    expect(miss.version).toBe(3);
    const hit = await cache.getOrLoad("row:1", async () => row, opts);
    expect(hit.status).toBe("HIT");
    expect(hit.version).toBe(3);
  });

  it("an engine built with nothing, or with a prefix Redis keys cannot carry, says what to pass", () => {
    expect(() => new (EdgeCache as Any)()).toThrow(/pass the options, e.g. new EdgeCache/);
    expect(() => h.cache({}, "has space")).toThrow(InvalidKeyError);
    expect(() => h.cache({}, "has space")).toThrow("use 1-32 of A-Z a-z 0-9 _ -");
  });

  it("an engine built without a Redis client throws a TypeError at once, not a BYPASS per read", () => {
    for (const redis of [undefined, null, {}, "https://example.upstash.io", { evalsha: 1 }]) {
      expect(() => h.cache({ redis: redis as Any }), String(redis)).toThrow(TypeError);
    }
    expect(() => h.cache()).not.toThrow();
  });
});

describe("values a write-through cannot store", () => {
  it("a BigInt, a cycle or a function is a TypeError before any request, never a CacheWriteError", async () => {
    const { CacheWriteError } = await import("../../../src/cache/index");
    const prefix = `wt${Date.now().toString(36)}`;
    const cache = h.cache({}, prefix);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    await h.resetCounter();
    for (const [what, write] of [
      ["a BigInt", () => cache.set("wt:1", { n: 1n })],
      ["a cycle", () => cache.writeThrough("wt:2", cyclic, 3)],
      ["a function", () => cache.set("wt:3", () => 1)],
    ] as const) {
      const error = await write().then(
        () => undefined,
        (e: unknown) => e,
      );
      // CacheWriteError means "Redis failed: use the outbox", where this write would fail forever.
      expect(error, what).toBeInstanceOf(TypeError);
      expect(error, what).not.toBeInstanceOf(CacheWriteError);
    }
    expect(await h.requests()).toBe(0);
    expect(await h.redis.exists(keySpace(prefix).entry("wt:1"))).toBe(0);
  });
});

describe("purge steps", () => {
  it("a budget or count below 1, or a cursor no step returned, throws before any request", async () => {
    const cache = h.cache();
    await h.resetCounter();
    await expect(cache.purgePattern("p:*", { budget: 0 })).rejects.toThrow(RangeError);
    await expect(cache.purgePattern("p:*", { count: -1 })).rejects.toThrow(RangeError);
    await expect(cache.purgePattern("p:*", { budget: 1.5 })).rejects.toThrow(RangeError);
    await expect(cache.purgePattern("p:*", { cursor: "abc" })).rejects.toThrow(TypeError);
    expect(await h.requests()).toBe(0);
    // Valid ones go through: one bounded step, whose cursor the next step takes.
    const step = await cache.purgePattern("p:*", { cursor: "0", budget: 10, count: 10 });
    expect(step.cursor).toMatch(/^\d+$/);
    expect(step.deleted).toBe(0);
  });
});

describe("engine options", () => {
  it("telemetry.shards outside 1..1024 throws when the engine is built", () => {
    for (const shards of [0, -1, 1.5, Number.NaN, 5000]) {
      expect(() => h.cache({ telemetry: { shards } }), String(shards)).toThrow(RangeError);
    }
    expect(() => h.cache({ telemetry: { shards: 4 } })).not.toThrow();
  });
});
