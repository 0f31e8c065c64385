import type { Redis } from "@upstash/redis";
import { describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../../src/cache";
import { keySpace } from "../../../src/cache/keys";
import { acquire } from "../../../src/cache/read/acquire";
import type { CheckSpec } from "../../../src/cache/read/checks";
import { readHit } from "../../../src/cache/read/hit";
import type { ReadReply } from "../../../src/cache/read/reply";
import type { ScriptClient } from "../../../src/cache/redis";
import { fillScript } from "../../../src/cache/scripts";
import { storeEntry } from "../../../src/cache/write/fill";
import { type CacheHarness, gate, sleep, useWarmHarness } from "./harness";

/**
 * Lease checks (src/cache/read/checks.ts, Flight.checkSent): a reader that joins its isolate's
 * flight while the leader loads cannot take the load's value on the load's word (the load
 * began before the reader did, maybe before a write acknowledged to it). A check riding on
 * another read of the isolate, sent after the reader began, that finds the load's lease still
 * held and the version key and own tags' counters as the grant captured them proves that no
 * invalidation ran since the grant: the reader takes the value when the load ends, without
 * waiting for the fill's answer. These pin hit.lua's answers, that the reader is served before
 * the fill answers with no request of its own, and that every kind of invalidation in between
 * makes the check vouch for nothing.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `lc${Math.random().toString(36).slice(2, 10)}`;
const noEarly = { earlyRefresh: false } as const;

describe("hit.lua's lease checks", () => {
  async function granted(prefix: string, versionKey: string | undefined, tags: string[]) {
    const keys = keySpace(prefix);
    const target = { redis: h.redis, keys };
    await h.redis.del(keys.lease("p"), keys.entry("p"));
    const reply = await acquire(target, "p", {
      versionKey,
      tags,
      learned: [],
      token: `tok${Math.random().toString(36).slice(2, 8)}`,
      leaseTtl: 10_000,
      early: false,
      estimateMs: 10,
    });
    expect(reply.tok).toBeTruthy();
    return reply;
  }
  const spec = (prefix: string, g: ReadReply, versionKey?: string, tags: string[] = []) =>
    ({
      prefix,
      key: "p",
      versionKey,
      tags,
      lease: { tok: g.tok ?? "", cv: g.cv, tags, tg: Array.isArray(g.tg) ? g.tg : [] },
    }) satisfies CheckSpec;
  // The carrier is a read of another key (no entry there: its own answer is a MISS).
  const check = (prefix: string, checks: CheckSpec[]) =>
    readHit({ redis: h.redis, keys: keySpace(prefix) }, "other", {
      tags: [],
      replica: false,
      checks,
    });

  it("answer true while the lease, the version key and the own tags' counters are as granted", async () => {
    const prefix = fresh();
    const keys = keySpace(prefix);
    await h.redis.set(keys.version("v"), "4");
    const g = await granted(prefix, "v", ["a", "b"]);
    expect(g.cv).toBe(4);
    const reply = await check(prefix, [spec(prefix, g, "v", ["a", "b"])]);
    expect(reply.s).toBe("MISS");
    expect(reply.ck).toEqual([true]);
    // Without a version key or tags, the lease alone; beside an entry check, in order.
    const plain = await granted(fresh(), undefined, []);
    const other = fresh();
    const bare = await granted(other, undefined, []);
    expect(
      (
        await check(other, [
          spec(other, bare),
          { prefix: other, key: "none", tags: [] },
          { ...spec(other, plain), key: "p" }, // another prefix's lease value: not this one
        ])
      ).ck,
    ).toEqual([true, false, false]);
  });

  it("answer false after any invalidation since the grant, whichever key it changed", async () => {
    const cases: Array<[string, (prefix: string) => Promise<unknown>]> = [
      ["a key invalidation (deletes the lease)", (p) => h.cache({}, p).apply({ keys: ["p"] })],
      [
        "a write-through (revokes the lease)",
        (p) =>
          h
            .cache({}, p)
            .set("p", { v: 9 }, { versionKey: "v", versionOf: (r) => r.v, tags: ["a"] }),
      ],
      // The version key is shared: its advance revokes only the lease of the entry named "v".
      ["an advance of a shared version key", (p) => h.cache({}, p).apply({ versions: { v: 5 } })],
      ["the version key evicted", (p) => h.redis.del(keySpace(p).version("v"))],
      ["an own tag bumped", (p) => h.cache({}, p).invalidateTags("b")],
      ["an own tag's counter evicted", (p) => h.redis.del(keySpace(p).tag("a"))],
      [
        "the lease expired and taken by another",
        (p) => h.redis.set(keySpace(p).lease("p"), "x.1.1"),
      ],
    ];
    for (const [name, change] of cases) {
      const prefix = fresh();
      await h.redis.set(keySpace(prefix).version("v"), "4");
      const g = await granted(prefix, "v", ["a", "b"]);
      await change(prefix);
      expect((await check(prefix, [spec(prefix, g, "v", ["a", "b"])])).ck, name).toEqual([false]);
    }
  });

  it("declare every key they read: the gateway's strict key check passes, and the carrier stays read-only", async () => {
    const prefix = fresh();
    const g = await granted(prefix, "v", ["a"]);
    await h.resetCounter();
    const reply = await check(prefix, [spec(prefix, g, "v", ["a"])]);
    expect(reply.ck).toEqual([true]);
    const stats = await h.gatewayStats();
    expect(stats.calls.writing).toBe(0);
    expect(stats.scripts.globalLock).toBe(0);
  });

  it("a lease taken again by a refused fill never has the refused lease's value", async () => {
    // fill.lua's regrant builds "<token>.<load ms>.<now>": a refused load of under a
    // millisecond would otherwise give the lease back its old value, and a late check of the
    // refused load would find it "still held". Tokens naming the next few Redis milliseconds
    // make that happen within a few tries.
    const prefix = fresh();
    const keys = keySpace(prefix);
    const target = { redis: h.redis, keys };
    for (let i = 0; i < 60; i++) {
      const [s, us] = (await h.redis.time()) as [number, number];
      const token = `base.12.${s * 1000 + Math.floor(us / 1000) + (i % 4)}`;
      await h.redis.del(keys.lease("p"));
      const refused = await storeEntry(target, "p", {
        token,
        json: "1",
        version: null,
        freshMs: 60_000,
        graceMs: 0,
        failSafeMs: 0,
        tags: [],
        loadMs: 12,
        id: "id1",
        regrant: { leaseTtl: 5_000, ownTags: 0 },
      });
      expect(refused.r).toBe("lease");
      expect(refused.tok).toMatch(/^base\.1[23]\.\d+$/);
      expect(refused.tok).not.toBe(token);
    }
  });
});

/**
 * A client that can hold the reply of the next fill.lua call after Redis ran it: models a fill
 * that answers late (a slow round trip) while a reader waits.
 */
function fillHoldingClient(redis: Redis) {
  let hold: { ran: () => void; release: Promise<void> } | undefined;
  let requests = 0;
  const run = async (sha: string, call: () => Promise<unknown>) => {
    requests++;
    const held = sha === fillScript.sha1 ? hold : undefined;
    if (held) hold = undefined;
    const reply = await call();
    if (held) {
      held.ran();
      await held.release;
    }
    return reply;
  };
  const client: ScriptClient = {
    evalsha: (sha, keys, args) => run(sha, () => redis.evalsha(sha, keys, args)),
    eval: (script, keys, args) => run("", () => redis.eval(script, keys, args)),
  };
  return {
    client,
    requests: () => requests,
    holdFill() {
      let ran!: () => void;
      let release!: () => void;
      const hasRun = new Promise<void>((resolve) => {
        ran = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      hold = { ran, release: released };
      return { ran: hasRun, release };
    },
  };
}

describe("a reader that joins during a load, vouched for by a lease check", () => {
  async function setUp(versionKey = "p") {
    const prefix = fresh();
    const held = fillHoldingClient(h.redis);
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    const background: Promise<unknown>[] = [];
    const engine = () =>
      new EdgeCache({
        redis: held.client,
        prefix,
        onError: () => {},
        flights,
        known,
        telemetry: { flushIntervalMs: 3_600_000 },
      });
    const opts = {
      ...noEarly,
      // The fill runs after the response, as in a Worker.
      waitUntil: (p: Promise<unknown>) => {
        background.push(p);
      },
      tags: ["items"],
      versionKey,
      versionOf: (r: { v: number }) => r.v,
    };
    const state = { truth: 1, calls: 0 };
    // The loader reads the source when called; its first call is held until `first.open()`.
    const first = gate<void>();
    const load = async () => {
      state.calls++;
      const v = state.truth;
      if (state.calls === 1) await first.load();
      return { v };
    };
    // "q" is cached and known fresh: its reads are hit reads, which carry checks.
    const q = () => engine().getOrLoad("q", async () => ({ v: 0 }), noEarly);
    await q();
    await q();
    // Round trips of a remote database (~100 ms): a check counts as overdue after twice that.
    for (let i = 0; i < 80; i++) flights.recordRoundTrip(100);
    const settle = async () => {
      while (background.length > 0) await Promise.all(background.splice(0));
    };
    return { prefix, held, engine, opts, state, first, load, q, settle };
  }

  it("takes the load's value before the fill answers, with no request of its own", async () => {
    const t = await setUp();
    const leader = t.engine().getOrLoad("p", t.load, t.opts);
    await t.first.started; // the leader loads under its lease
    const joiner = t.engine().getOrLoad("p", t.load, t.opts);
    await sleep(5);
    const before = t.held.requests();
    await t.q(); // this read carries the joiner's lease check: still held
    expect(t.held.requests()).toBe(before + 1);
    const fill = t.held.holdFill();
    t.first.open();
    expect((await leader).value).toEqual({ v: 1 });
    await fill.ran; // the fill ran in Redis; its answer is held
    const served = await Promise.race([joiner, sleep(1_000).then(() => "still waiting")]);
    expect(served).toMatchObject({ value: { v: 1 } });
    // Nothing but the leader's acquire and fill and the carrier's read: the joiner sent none.
    expect(t.held.requests()).toBe(before + 2);
    fill.release();
    await t.settle();
    expect(t.state.calls).toBe(1);
    const engine = t.engine();
    await engine.flushStats();
    expect((await engine.stats()).check_vouched).toBe(1);
  });

  const invalidations: Array<[string, string, (e: EdgeCache) => Promise<unknown>]> = [
    [
      "a write of the key (version advance and delete)",
      "p",
      (e) => e.apply({ keys: ["p"], versions: { p: 2 } }),
    ],
    ["an advance of a shared version key", "shared", (e) => e.apply({ versions: { shared: 2 } })],
    ["a bump of an own tag", "p", (e) => e.invalidateTags("items")],
  ];
  for (const [what, versionKey, invalidate] of invalidations) {
    it(`a reader that began after ${what} during the load gets a value loaded after it`, async () => {
      const t = await setUp(versionKey);
      const leader = t.engine().getOrLoad("p", t.load, t.opts);
      await t.first.started; // the load read v1 and is held
      t.state.truth = 2;
      await invalidate(h.cache({}, t.prefix)); // acknowledged before the reader begins
      const late = t.engine().getOrLoad("p", t.load, t.opts);
      await sleep(5);
      await t.q(); // carries the late reader's lease check: it must say no
      // The fill's answer is held: the late reader looks at the offered v1 for a while, with
      // the check's answer in hand, before the refusal and the reload replace it.
      const fill = t.held.holdFill();
      t.first.open();
      expect((await leader).value).toEqual({ v: 1 }); // began before the write: either is fine
      await fill.ran;
      await sleep(50);
      fill.release();
      expect((await late).value).toEqual({ v: 2 });
      await t.settle();
    });
  }
});
