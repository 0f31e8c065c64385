import { describe, expect, it } from "vitest";
import { keySpace } from "../../../src/cache/keys";
import { acquire } from "../../../src/cache/read/acquire";
import { readHit } from "../../../src/cache/read/hit";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * The hit and acquire scripts splice the stored value (JSON already) into their JSON reply, so
 * the client parses a reply once. These pin what that must keep: every JSON value arrives
 * intact and parsed, "not found" (null) stays distinct from "no entry", and an entry that is
 * not JSON (written by something else) costs a load, never an exception.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `rp${Math.random().toString(36).slice(2, 10)}`;

describe("the value spliced into the reply", () => {
  it("arrives parsed and intact, whatever JSON it is", async () => {
    const prefix = fresh();
    const values = [
      { name: 'quote " backslash \\ slash / }{,', nested: { a: [1, 2.5, -3e-7, null, true] } },
      "a plain string with \u00e9\u4e2d\ud83d\ude80 and \n newline",
      42,
      [],
      false,
    ];
    for (const [i, value] of values.entries()) {
      const cache = h.cache({}, prefix);
      const key = `k:${i}`;
      const first = await cache.getOrLoad(key, async () => value, { earlyRefresh: false });
      expect(first.status).toBe("MISS");
      const again = await cache.getOrLoad(key, async () => "not this", { earlyRefresh: false });
      expect(again.status).toBe("HIT");
      expect(again.value).toEqual(value);
      const reply = await readHit({ redis: h.redis, keys: keySpace(prefix) }, key, {
        tags: [],
        replica: false,
      });
      expect(reply.s).toBe("HIT");
      expect(reply.v).toEqual(value); // parsed, not a JSON string to parse again
    }
  });

  it("a cached null (not found) is a value, not a missing entry", async () => {
    const prefix = fresh();
    const cache = h.cache({}, prefix);
    await cache.getOrLoad("gone", async () => null, { earlyRefresh: false });
    const reply = await readHit({ redis: h.redis, keys: keySpace(prefix) }, "gone", {
      tags: [],
      replica: false,
    });
    expect(reply.s).toBe("HIT");
    expect("v" in reply && reply.v === null).toBe(true);
    const peek = await cache.get("gone");
    expect(peek?.status).toBe("HIT");
    expect(peek?.value).toBeNull();
    const none = await readHit({ redis: h.redis, keys: keySpace(prefix) }, "never", {
      tags: [],
      replica: false,
    });
    expect(none.s).toBe("MISS");
    expect("v" in none).toBe(false);
  });

  it("an entry that is not JSON is loaded around (BYPASS), never thrown at the caller", async () => {
    const prefix = fresh();
    const cache = h.cache({}, prefix);
    await cache.getOrLoad("bad", async () => ({ ok: 1 }), { earlyRefresh: false });
    // Someone else's write, not ours: the stored value is no longer JSON.
    await h.redis.hset(keySpace(prefix).entry("bad"), { v: "{not json" });
    const errors: string[] = [];
    const reader = h.cache({ onError: (_e, op) => errors.push(op) }, prefix);
    const read = await reader.getOrLoad("bad", async () => ({ ok: 2 }), { earlyRefresh: false });
    expect(read.value).toEqual({ ok: 2 });
    expect(read.status).toBe("BYPASS");
    expect(errors).toContain("read");
  });

  it("a fresh HIT, which hit.lua writes out by hand, says what the cjson-built answers say", async () => {
    // hit.lua builds its HIT reply without cjson (the common answer, and cjson was its costliest
    // part); acquire.lua answers the same entry through putEntry + cjson. Field for field alike:
    // versioned and not, with tags, with and without a measured load time.
    const prefix = fresh();
    const keys = keySpace(prefix);
    const cache = h.cache({}, prefix);
    const versioned = { versionKey: "p:1", versionOf: (r: { version: number }) => r.version };
    await cache.getOrLoad("p:1", async () => ({ version: 7, name: 'a "b" \\ c' }), {
      ...versioned,
      earlyRefresh: false,
    });
    await cache.getOrLoad("t:1", async () => [1, 2], { tags: ["x", "y"], earlyRefresh: false });
    await cache.set("s:1", "set, no load time", {});
    // Written by something else: an entry hash without the `ver` field (cjson leaves it out).
    await cache.set("n:1", "no ver field", {});
    await h.redis.hdel(keys.entry("n:1"), "ver");
    const cases = [
      { key: "p:1", versionKey: "p:1", tags: [] as string[] },
      { key: "t:1", versionKey: undefined, tags: ["x", "y"] },
      { key: "s:1", versionKey: undefined, tags: [] as string[] },
      { key: "n:1", versionKey: undefined, tags: [] as string[] },
    ];
    for (const c of cases) {
      const target = { redis: h.redis, keys };
      const hit = await readHit(target, c.key, { ...c, replica: false });
      const viaAcquire = await acquire(target, c.key, {
        versionKey: c.versionKey,
        tags: c.tags,
        learned: [],
        token: "t",
        leaseTtl: 1000,
        early: false,
        estimateMs: 0,
      });
      expect(hit.s).toBe("HIT");
      expect(viaAcquire.s).toBe("HIT");
      expect(viaAcquire.tok).toBeUndefined(); // a fresh hit takes no lease
      const { now: a, ...hitRest } = hit;
      const { now: b, ...acquireRest } = viaAcquire;
      expect(hitRest).toEqual(acquireRest);
      expect(typeof a).toBe("number");
      expect(Math.abs(a - b)).toBeLessThan(1000);
    }
  });
});
