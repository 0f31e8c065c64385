import { describe, expect, it } from "vitest";
import { keySpace } from "../../../src/cache/keys";
import { readHit } from "../../../src/cache/read/hit";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * The entry format level (`fl`, lib/entry.lua FORMAT_LEVEL): fill.lua writes its level, and an
 * entry of a higher level (a later engine's, which may carry a rule this one does not know) is
 * never served by this engine: not by the hit script's short or general path, not to a late
 * reader's check, and acquire.lua takes it as a miss, so the loader's value replaces it. Entries
 * without `fl` (written before it existed) are served as before.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

type Row = { version: number; name: string };
const versioned = {
  versionKey: "p",
  versionOf: (r: Row) => r.version,
  earlyRefresh: false,
  ttl: 60_000,
};

function space() {
  const prefix = `fl${Math.random().toString(36).slice(2, 10)}`;
  const keys = keySpace(prefix);
  return { prefix, keys, target: { redis: h.redis, keys }, cache: h.cache({}, prefix) };
}

describe("the entry format level", () => {
  it("a fill writes this engine's level; an entry without one (an older engine's) is still served", async () => {
    const { keys, target, cache } = space();
    await cache.getOrLoad("p", async () => ({ version: 1, name: "a" }), versioned);
    expect(String(await h.redis.hget(keys.entry("p"), "fl"))).toBe("1");
    expect((await readHit(target, "p", { versionKey: "p", tags: [], replica: false })).s).toBe(
      "HIT",
    );
    await h.redis.hdel(keys.entry("p"), "fl");
    const old = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
    expect(old.s).toBe("HIT");
    expect(old.v).toEqual({ version: 1, name: "a" });
  });

  it("an entry of a higher level, or one it cannot read, is not served: the loader's value replaces it", async () => {
    for (const level of ["2", "10", "x"]) {
      const { keys, target, cache } = space();
      await cache.getOrLoad("p", async () => ({ version: 1, name: "theirs" }), versioned);
      await h.redis.hset(keys.entry("p"), { fl: level });
      // Short path and general path (a declared tag the entry does not have) alike.
      for (const tags of [[], ["other"]]) {
        const reply = await readHit(target, "p", { versionKey: "p", tags, replica: false });
        expect(reply.s, `fl ${level}, tags ${tags}`).toBe("MISS");
        expect(reply.r, `fl ${level}, tags ${tags}`).toBe("format");
        expect(reply.v).toBeUndefined();
      }
      expect(await cache.get("p", { versionKey: "p" }), `fl ${level}`).toBeNull();
      let loads = 0;
      const read = await cache.getOrLoad(
        "p",
        async () => {
          loads++;
          return { version: 1, name: "ours" };
        },
        versioned,
      );
      expect(read.status, `fl ${level}`).toBe("MISS");
      expect(read.value.name).toBe("ours");
      expect(loads).toBe(1);
      await cache.settle();
      expect(String(await h.redis.hget(keys.entry("p"), "fl"))).toBe("1");
      const again = await cache.getOrLoad("p", async () => ({ version: 1, name: "x" }), versioned);
      expect(again.status).toBe("HIT");
      expect(again.value.name).toBe("ours");
    }
  });

  it('a level that is no level (Lua\'s tonumber reads "nan" as a number that compares false with every level) is not served', async () => {
    // tonumber("nan") is NaN in Redis' Lua, and NaN > FORMAT_LEVEL is false: read as at or
    // below this engine's level, such an entry was served by the general path, acquire.lua
    // and a check. A level is the decimal digits fill.lua writes; anything else is above.
    for (const level of ["nan", "-nan", "NaN", "-1"]) {
      const { prefix, keys, target, cache } = space();
      await cache.getOrLoad("p", async () => ({ version: 1, name: "theirs" }), versioned);
      await cache.getOrLoad("q", async () => ({ version: 1, name: "q" }), {
        ...versioned,
        versionKey: "q",
      });
      await h.redis.hset(keys.entry("p"), { fl: level });
      const check = { prefix, key: "p", versionKey: "p", tags: [], own: 0 };
      const checked = await readHit(target, "q", {
        versionKey: "q",
        tags: [],
        replica: false,
        checks: [check],
      });
      expect(checked.ck, `fl ${level}`).toEqual([false]);
      const reply = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
      expect([reply.s, reply.r, reply.v], `fl ${level}`).toEqual(["MISS", "format", undefined]);
      expect(await cache.get("p", { versionKey: "p" }), `fl ${level}`).toBeNull();
      const read = await cache.getOrLoad(
        "p",
        async () => ({ version: 1, name: "ours" }),
        versioned,
      );
      expect([read.status, read.value.name], `fl ${level}`).toEqual(["MISS", "ours"]);
      await cache.settle();
      expect(String(await h.redis.hget(keys.entry("p"), "fl"))).toBe("1");
    }
  });

  it("a late reader's check of a higher-level entry answers false", async () => {
    const { prefix, keys, target, cache } = space();
    await cache.getOrLoad("q", async () => ({ version: 1, name: "q" }), {
      ...versioned,
      versionKey: "q",
    });
    await cache.getOrLoad("p", async () => ({ version: 1, name: "p" }), versioned);
    const check = { prefix, key: "q", versionKey: "q", tags: [], own: 0 };
    const read = () =>
      readHit(target, "p", { versionKey: "p", tags: [], replica: false, checks: [check] });
    const valid = await read();
    expect(typeof valid.ck?.[0]).toBe("string");
    await h.redis.hset(keys.entry("q"), { fl: "2" });
    const refused = await read();
    expect(refused.s).toBe("HIT"); // the read's own entry is this engine's
    expect(refused.ck).toEqual([false]);
  });
});
