import { describe, expect, it } from "vitest";
import { keySpace } from "../../../src/cache/keys";
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
});
