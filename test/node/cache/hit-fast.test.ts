import { describe, expect, it } from "vitest";
import { keySpace } from "../../../src/cache/keys";
import { acquire } from "../../../src/cache/read/acquire";
import { readHit } from "../../../src/cache/read/hit";
import type { ReadReply } from "../../../src/cache/read/reply";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * hit.lua answers the common case (a fresh entry without tags, version current) on a short path
 * before its general one. These pin that the short path answers exactly what the general path
 * and acquire.lua (cjson-built) answer, and that everything it must not serve falls through to
 * the general path's verdict. Declaring a tag the entry does not have sends the same entry down
 * the general path (the short path requires no declared tags), which is how the two are compared.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `hf${Math.random().toString(36).slice(2, 10)}`;
const versioned = { versionKey: "p", versionOf: (r: { version: number }) => r.version };

/** The reply without its `now` (each read has its own), and `now` itself. */
function split(reply: ReadReply): { now: number; rest: Record<string, unknown> } {
  const { now, ...rest } = reply as ReadReply & { now: number };
  return { now, rest };
}

/** A fresh prefix: its key layout, where reads go, an engine on it and the entry "p". */
function space() {
  const prefix = fresh();
  const keys = keySpace(prefix);
  return {
    keys,
    target: { redis: h.redis, keys },
    cache: h.cache({}, prefix),
    entry: keys.entry("p"),
  };
}

describe("hit.lua's short path for a fresh, untagged entry", () => {
  it("answers what the general path and acquire.lua answer, field for field", async () => {
    const { target, cache, entry } = space();
    const fill = async () => {
      await h.redis.del(entry);
      await cache.getOrLoad("p", async () => ({ version: 4, name: 'q " \\ é' }), {
        ...versioned,
        earlyRefresh: false,
      });
    };
    // Each variant of the stored fields, as fill.lua writes them and as something else might.
    const variants: [string, Record<string, string> | string[]][] = [
      ["as filled", {}],
      ["no load time, no ct", ["lt", "ct"]],
      ["zero load time", { lt: "0", ct: "0" }],
      ["fractional load time (not digits: the general reply)", { lt: "12.5" }],
      ["a version above the key's", { ver: "9" }],
    ];
    for (const [name, change] of variants) {
      await fill();
      if (Array.isArray(change)) await h.redis.hdel(entry, ...change);
      else if (Object.keys(change).length > 0) await h.redis.hset(entry, change);
      const short = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
      const general = await readHit(target, "p", {
        versionKey: "p",
        tags: ["not-its-tag"],
        replica: false,
      });
      const viaAcquire = await acquire(target, "p", {
        versionKey: "p",
        tags: [],
        learned: [],
        token: "t",
        leaseTtl: 1000,
        early: false,
        estimateMs: 0,
      });
      expect(short.s, name).toBe("HIT");
      const a = split(short);
      const b = split(general);
      const c = split(viaAcquire);
      expect(a.rest, name).toEqual(b.rest);
      expect(a.rest, name).toEqual(c.rest);
      expect(Math.abs(a.now - b.now), name).toBeLessThan(1000);
    }
    // Unversioned: `set` writes ver "" and the short path keeps it a string.
    await cache.set("s", { plain: true }, {});
    const short = await readHit(target, "s", { tags: [], replica: false });
    const general = await readHit(target, "s", { tags: ["x"], replica: false });
    expect(short.s).toBe("HIT");
    expect(split(short).rest).toEqual(split(general).rest);
    expect((short as { ver?: unknown }).ver).toBe("");
  });

  it("falls through to the general verdict for everything it must not serve", async () => {
    const { keys, target, cache, entry } = space();
    const verKey = keys.version("p");
    const now = Date.now();
    const cases: {
      name: string;
      change: () => Promise<unknown>;
      s: string;
      r?: string;
    }[] = [
      {
        name: "version key bumped past the entry",
        change: () => h.redis.set(verKey, "5"),
        s: "MISS",
        r: "version",
      },
      {
        name: "version key empty (first load in flight)",
        change: () => h.redis.set(verKey, ""),
        s: "MISS",
        r: "version",
      },
      { name: "version key evicted", change: () => h.redis.del(verKey), s: "MISS", r: "version" },
      {
        name: "entry version empty",
        change: () => h.redis.hset(entry, { ver: "" }),
        s: "MISS",
        r: "version",
      },
      {
        name: "past its fresh time",
        change: () => h.redis.hset(entry, { fu: String(now - 1000) }),
        s: "STALE",
      },
      {
        name: "past its stale time, fail-safe copy kept",
        change: () => h.redis.hset(entry, { fu: String(now - 2000), su: String(now - 1000) }),
        s: "MISS",
        r: "expired",
      },
      {
        name: "tagged entry, tags not declared",
        change: () => h.redis.hset(entry, { tg: JSON.stringify({ a: "1" }) }),
        s: "MISS",
        r: "need",
      },
    ];
    for (const c of cases) {
      await h.redis.del(entry, verKey);
      await cache.getOrLoad("p", async () => ({ version: 4 }), {
        ...versioned,
        earlyRefresh: false,
      });
      await c.change();
      const reply = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
      expect(reply.s, c.name).toBe(c.s);
      expect((reply as { r?: string }).r, c.name).toBe(c.r);
    }
    // A negative entry at version 0 with no version key ("nothing committed yet") is served,
    // by the general path.
    await h.redis.del(entry, verKey);
    await cache.getOrLoad("p", async () => null as { version: number } | null, {
      versionKey: "p",
      versionOf: (r) => r?.version ?? 0,
      negativeTtl: 60_000,
      earlyRefresh: false,
    });
    await h.redis.del(verKey);
    expect(String(await h.redis.hget(entry, "ver"))).toBe("0"); // auto-deserialized
    const negative = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
    expect(negative.s).toBe("HIT");
    expect("v" in negative && negative.v === null).toBe(true);
  });
});
