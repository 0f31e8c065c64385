import type { Redis } from "@upstash/redis";
import { describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../../src/cache";
import { keySpace } from "../../../src/cache/keys";
import type { ScriptClient } from "../../../src/cache/redis";
import { acquireScript, fillScript } from "../../../src/cache/scripts";
import { storeEntry } from "../../../src/cache/write/fill";
import { type CacheHarness, gate, sleep, useWarmHarness } from "./harness";

/**
 * A refused fill that reloads for its waiting followers (src/cache/read/load.ts, fill.lua's
 * ARGV[13]): when a write or a bump overtook a load while readers of the isolate wait on it,
 * the same fill.lua request takes the lease again, and the leader loads once more for them, one
 * acquire's round trip sooner than the new flight they would otherwise lead. These pin the
 * script's grant, that the followers get a value read after the write with no acquire of their
 * own, and that nothing reloads when nobody waits or twice in a row.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `rl${Math.random().toString(36).slice(2, 10)}`;
const noEarly = { earlyRefresh: false } as const;

describe("fill.lua taking the lease again", () => {
  const write = (token: string, regrant?: { leaseTtl: number; ownTags: number }) => ({
    token,
    json: JSON.stringify({ v: 1 }),
    version: 1,
    versionKey: "p",
    freshMs: 60_000,
    graceMs: 0,
    failSafeMs: 0,
    tags: [["a", "-1"] as const, ["late", "@0"] as const],
    loadMs: 12,
    id: "fillid1",
    regrant,
  });

  it("after a refusal, when asked and the lease is free: same token, a new announcement, the captured counters", async () => {
    const prefix = fresh();
    const keys = keySpace(prefix);
    const target = { redis: h.redis, keys };
    await h.redis.set(keys.version("p"), "2"); // a write advanced the version during the load
    await h.redis.set(keys.tag("a"), "77");
    const refused = await storeEntry(target, "p", {
      ...write("tok123.10.5"),
      regrant: { leaseTtl: 5_000, ownTags: 1 },
    });
    // The lease was gone (a write deletes it): refused for the lease, and taken again.
    expect(refused.ok).toBe(false);
    expect(refused.r).toBe("lease");
    expect(refused.tok).toMatch(/^tok123\.12\.\d+$/); // the announced time is this load's 12 ms
    expect(refused.tg).toEqual(["77"]); // the own tag's counter only (one own tag)
    expect(refused.cv).toBe(2);
    expect(refused.now).toBeGreaterThan(0);
    expect(await h.redis.get(keys.lease("p"))).toBe(refused.tok);
    expect(await h.redis.pttl(keys.lease("p"))).toBeGreaterThan(4_000);
    expect(await h.redis.hget(keys.entry("p"), "v")).toBeNull(); // nothing stored

    // The reload's fill with the new lease and snapshot lands (here with a current version).
    const reloaded = await storeEntry(target, "p", {
      ...write(refused.tok ?? ""),
      version: 2,
      tags: [
        ["a", refused.tg?.[0] ?? ""],
        ["late", `@${refused.now}`],
      ],
    });
    expect(reloaded.ok).toBe(true);
    expect(await h.redis.get(keys.lease("p"))).toBeNull();
  });

  it("not when not asked, not while someone else holds the lease, not for an expired value", async () => {
    const prefix = fresh();
    const keys = keySpace(prefix);
    const target = { redis: h.redis, keys };
    await h.redis.set(keys.version("p"), "2");
    const unasked = await storeEntry(target, "p", write("tok1.1.1"));
    expect(unasked).toEqual({ ok: false, r: "lease" });
    expect(await h.redis.get(keys.lease("p"))).toBeNull();

    await h.redis.set(keys.lease("p"), "other.5.5");
    const held = await storeEntry(target, "p", {
      ...write("tok1.1.1"),
      regrant: { leaseTtl: 5_000, ownTags: 1 },
    });
    expect(held).toEqual({ ok: false, r: "lease" });
    expect(await h.redis.get(keys.lease("p"))).toBe("other.5.5"); // untouched

    await h.redis.set(keys.lease("p"), "tok2.1.1");
    const expired = await storeEntry(target, "p", {
      ...write("tok2.1.1"),
      version: 2,
      tags: [],
      expiresAtMs: 1, // past its end of life already
      regrant: { leaseTtl: 5_000, ownTags: 1 },
    });
    expect(expired).toEqual({ ok: false, r: "expired" });
    expect(await h.redis.get(keys.lease("p"))).toBeNull();
  });
});

/** Counts each script's calls through `redis` (by its digest). */
function countingClient(redis: Redis) {
  const calls = new Map<string, number>();
  const count = (sha: string) => calls.set(sha, (calls.get(sha) ?? 0) + 1);
  const client: ScriptClient = {
    evalsha: (sha, keys, args) => {
      count(sha);
      return redis.evalsha(sha, keys, args);
    },
    eval: (script, keys, args) => redis.eval(script, keys, args),
  };
  return {
    client,
    of: (sha: string) => calls.get(sha) ?? 0,
    reset: () => calls.clear(),
  };
}

describe("a refused fill reloads for the readers waiting on it", () => {
  async function setUp() {
    const prefix = fresh();
    const counting = countingClient(h.redis);
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    // Work after the response goes to waitUntil, as in a Worker (a reload needs it).
    const background: Promise<unknown>[] = [];
    const engine = () =>
      new EdgeCache({
        redis: counting.client,
        prefix,
        onError: () => {},
        flights,
        known,
        telemetry: { flushIntervalMs: 3_600_000 },
      });
    const settle = async () => {
      while (background.length > 0) await Promise.all(background.splice(0));
    };
    const opts = {
      ...noEarly,
      waitUntil: (p: Promise<unknown>) => {
        background.push(p);
      },
      tags: ["items"],
      versionKey: "item",
      versionOf: (v: { v: number }) => v.v,
    };
    const state = { truth: 1, calls: 0 };
    // A loader reads the source when called; its first call is held until `first.open()`.
    const first = gate<void>();
    const load = async () => {
      state.calls++;
      const v = state.truth;
      if (state.calls === 1) await first.load();
      return { v };
    };
    return { prefix, counting, engine, settle, opts, state, first, load };
  }

  it("followers who began before and after the write get the reloaded value, with no acquire of their own", async () => {
    const t = await setUp();
    const leader = t.engine().getOrLoad("item", t.load, t.opts);
    await t.first.started;
    const before = t.engine().getOrLoad("item", t.load, t.opts);
    // The write commits v2 and is acknowledged (it deletes the entry and the lease).
    t.state.truth = 2;
    await t.engine().apply({ keys: ["item"], versions: { item: 2 } });
    const after = t.engine().getOrLoad("item", t.load, t.opts);
    await sleep(20);
    t.counting.reset();
    t.first.open();
    expect((await leader).value).toEqual({ v: 1 }); // began before the write
    expect([1, 2]).toContain((await before).value.v);
    expect((await after).value).toEqual({ v: 2 }); // a value read after the write
    await t.settle();
    // One fill refused and taking the lease again, one reload, its fill; no acquire.
    expect(t.state.calls).toBe(2);
    expect(t.counting.of(acquireScript.sha1)).toBe(0);
    expect(t.counting.of(fillScript.sha1)).toBe(2);
    const engine = t.engine();
    await engine.flushStats();
    expect((await engine.stats()).reloads).toBe(1);
    // The cache holds v2.
    const next = await t.engine().getOrLoad("item", async () => ({ v: 0 }), t.opts);
    expect(next).toMatchObject({ status: "HIT", value: { v: 2 } });
  });

  it("nothing reloads when nobody waits: the lease is let go and the next read loads", async () => {
    const t = await setUp();
    const leader = t.engine().getOrLoad("item", t.load, t.opts);
    await t.first.started;
    t.state.truth = 2;
    await t.engine().apply({ keys: ["item"], versions: { item: 2 } });
    t.first.open();
    expect((await leader).value).toEqual({ v: 1 });
    await t.settle();
    expect(t.state.calls).toBe(1);
    expect(await h.redis.get(keySpace(t.prefix).lease("item"))).toBeNull();
  });

  it("at most once: a reload overtaken by another write lets its followers read again", async () => {
    const t = await setUp();
    const second = gate<void>();
    const load = async () => {
      t.state.calls++;
      const v = t.state.truth;
      if (t.state.calls === 1) await t.first.load();
      if (t.state.calls === 2) await second.load();
      return { v };
    };
    const leader = t.engine().getOrLoad("item", load, t.opts);
    await t.first.started;
    t.state.truth = 2;
    await t.engine().apply({ keys: ["item"], versions: { item: 2 } });
    const after = t.engine().getOrLoad("item", load, t.opts);
    await sleep(20);
    t.first.open();
    await leader; // answered; its fill and the reload run after the response
    await second.started; // the reload runs; another write overtakes it too
    t.state.truth = 3;
    await t.engine().apply({ keys: ["item"], versions: { item: 3 } });
    const later = t.engine().getOrLoad("item", load, t.opts);
    await sleep(20);
    second.open();
    // The first follower began before the reload started: its value (v2) was read after it
    // began. The later one began after the second write: it must see v3.
    expect((await after).value).toEqual({ v: 2 });
    expect((await later).value).toEqual({ v: 3 });
    await t.settle();
    expect(t.state.calls).toBe(3); // the first load, one reload, the later reader's own load
    const engine = t.engine();
    await engine.flushStats();
    expect((await engine.stats()).reloads).toBe(1); // the reload's refused fill took nothing
  });
});
