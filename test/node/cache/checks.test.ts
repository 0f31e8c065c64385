import type { Redis } from "@upstash/redis";
import { describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../../src/cache";
import { keySpace } from "../../../src/cache/keys";
import type { CheckSpec } from "../../../src/cache/read/checks";
import { readHit } from "../../../src/cache/read/hit";
import type { ScriptClient } from "../../../src/cache/redis";
import { type CacheHarness, sleep, useWarmHarness } from "./harness";

/**
 * Checks (src/cache/read/checks.ts): a reader that joins its isolate's flight after the
 * leader's read went out is vouched for by a check of the entry riding on another read the
 * isolate sends after it began, when the check found the very fill the value came from (same
 * fill id) fresh and valid. These pin hit.lua's answers, that a late reader costs no request of
 * its own, and that a check finding another fill, or nothing, vouches for nothing.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `ck${Math.random().toString(36).slice(2, 10)}`;
const versioned = { versionKey: "p", versionOf: (r: { v: number }) => r.v };
const noEarly = { earlyRefresh: false } as const;

describe("hit.lua's checks", () => {
  it("answer the fill id of a fresh, valid entry, and false for anything a hit would not serve", async () => {
    const prefix = fresh();
    const keys = keySpace(prefix);
    const cache = h.cache({}, prefix);
    const target = { redis: h.redis, keys };
    const entry = keys.entry("p");
    const fill = async () => {
      await h.redis.del(entry);
      await cache.getOrLoad("p", async () => ({ v: 3 }), {
        ...versioned,
        ...noEarly,
        tags: ["a"],
        tagsOf: () => ["b"],
      });
    };
    const spec: CheckSpec = { prefix, key: "p", versionKey: "p", tags: ["a", "b"] };
    // The carrier is a read of another key (here one with no entry: its own answer is a MISS).
    const check = async (checks = [spec]) =>
      readHit(target, "other", { tags: [], replica: false, checks });

    await fill();
    const id = await h.redis.hget<string>(entry, "id");
    expect(id).toMatch(/^[0-9a-z]+$/);
    expect((await cache.inspect("p", "p")).entry?.fillId).toBe(id);
    const valid = await check();
    expect(valid.s).toBe("MISS");
    expect(valid.ck).toEqual([id]);
    // The entry's own read carries the same id.
    expect(
      (await readHit(target, "p", { versionKey: "p", tags: ["a", "b"], replica: false })).id,
    ).toBe(id);
    // Two checks in one read, each with its own keys, answered in order.
    expect((await check([spec, { prefix, key: "none", tags: [] }])).ck).toEqual([id, false]);

    const cases: Array<[string, () => Promise<unknown>, CheckSpec?]> = [
      ["version key bumped", () => h.redis.set(keys.version("p"), "9")],
      ["version key evicted", () => h.redis.del(keys.version("p"))],
      ["own tag bumped", () => h.redis.incr(keys.tag("a"))],
      ["late tag bumped", () => h.redis.incr(keys.tag("b"))],
      ["tag counter evicted", () => h.redis.del(keys.tag("b"))],
      ["entry deleted", () => h.redis.del(entry)],
      ["past its fresh time", () => h.redis.hset(entry, { fu: "1" })],
      [
        "a tag not declared (fails closed)",
        async () => undefined,
        { prefix, key: "p", versionKey: "p", tags: ["a"] },
      ],
      [
        "an own tag the entry was not filled under",
        async () => h.redis.set(keys.tag("c"), "1"),
        { prefix, key: "p", versionKey: "p", tags: ["c", "a", "b"], own: 1 },
      ],
    ];
    for (const [name, change, declared] of cases) {
      await fill();
      await change();
      expect((await check([declared ?? spec])).ck, name).toEqual([false]);
    }
  });

  it("declare every key they read: the gateway's strict key check passes, and a hit stays read-only", async () => {
    const prefix = fresh();
    const keys = keySpace(prefix);
    const cache = h.cache({}, prefix);
    await cache.getOrLoad("p", async () => ({ v: 1 }), { ...versioned, ...noEarly, tags: ["a"] });
    await h.resetCounter();
    const reply = await readHit({ redis: h.redis, keys }, "p", {
      versionKey: "p",
      tags: ["a"],
      replica: false,
      checks: [{ prefix, key: "p", versionKey: "p", tags: ["a"] }],
    });
    expect(reply.s).toBe("HIT");
    expect(reply.ck).toEqual([reply.id]);
    const stats = await h.gatewayStats();
    expect(stats.calls.writing).toBe(0);
    expect(stats.scripts.globalLock).toBe(0);
  });
});

/**
 * A client whose replies can be held back after Redis ran the request: models a read that went
 * out (and ran) before a late reader began and answers after. `hold(entryKey)` holds the next
 * script call whose first key is `entryKey` and carries no checks (or, with `carrier`, does).
 */
function holdingClient(redis: Redis) {
  const holds: Array<{
    key: string;
    carrier: boolean;
    ran: () => void;
    release: Promise<void>;
  }> = [];
  const run = async (call: () => Promise<unknown>, keys: string[], args: unknown[]) => {
    const carries = args.length > 3; // hit.lua: 3 arguments of its own, then the checks
    const i = holds.findIndex((x) => x.key === keys[0] && x.carrier === carries);
    const held = i >= 0 ? holds.splice(i, 1)[0] : undefined;
    const reply = await call();
    if (held) {
      held.ran();
      await held.release;
    }
    return reply;
  };
  const client: ScriptClient = {
    evalsha: (sha, keys, args) => run(() => redis.evalsha(sha, keys, args), keys, args),
    eval: (script, keys, args) => run(() => redis.eval(script, keys, args), keys, args),
  };
  return {
    client,
    hold(key: string, carrier = false) {
      let ran!: () => void;
      let release!: () => void;
      const hasRun = new Promise<void>((resolve) => {
        ran = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.push({ key, carrier, ran, release: released });
      return { ran: hasRun, release };
    },
  };
}

describe("a late reader vouched for by a check on another read", () => {
  /** One isolate: per-request engines sharing flights and known entries, over `client`. */
  function isolate(client: ScriptClient, prefix: string, flights: FlightRegistry) {
    const known = new KnownEntries();
    return () =>
      new EdgeCache({
        redis: client,
        prefix,
        onError: () => {},
        flights,
        known,
        telemetry: { flushIntervalMs: 3_600_000 },
      });
  }

  async function setUp() {
    const prefix = fresh();
    const keys = keySpace(prefix);
    const held = holdingClient(h.redis);
    const flights = new FlightRegistry();
    const engine = isolate(held.client, prefix, flights);
    const opts = { ...versioned, ...noEarly, tags: ["items"] };
    let truth = 1;
    const loads: number[] = [];
    const load = async () => {
      loads.push(truth);
      return { v: truth };
    };
    // "p" and the carrier's key "q" are cached, and this isolate knows both fresh (so its reads
    // of them are hit reads, which carry checks).
    await engine().getOrLoad("p", load, opts);
    await engine().getOrLoad("q", async () => ({ v: 0 }), { ...noEarly });
    await engine().getOrLoad("p", load, opts);
    await engine().getOrLoad("q", async () => ({ v: 0 }), { ...noEarly });
    loads.length = 0;
    // Round trips of a remote database (~100 ms), not this machine's ~1 ms: a check counts as
    // overdue after twice that, and the holds below must not outlast it.
    for (let i = 0; i < 80; i++) flights.recordRoundTrip(100);
    return {
      keys,
      held,
      engine,
      opts,
      load,
      loads,
      setTruth: (v: number) => {
        truth = v;
      },
    };
  }

  it("takes the leader's value with no read of its own (2 requests, not 3), also when the check answers after the leader", async () => {
    for (const checkAnswersFirst of [true, false]) {
      const t = await setUp();
      // 1. The leader's hit read of "p" runs in Redis; its reply is held.
      const leaderRead = t.held.hold(t.keys.entry("p"));
      const leader = t.engine().getOrLoad("p", t.load, t.opts);
      await leaderRead.ran;
      await h.resetCounter();
      // 2. A reader begins now: its flight's read went out before it, so it cannot vouch.
      const late = t.engine().getOrLoad("p", t.load, t.opts);
      await sleep(5);
      // 3. Another request of the isolate reads "q": that read carries the late reader's check.
      const carrierRead = t.held.hold(t.keys.entry("q"), true);
      const carrier = t.engine().getOrLoad("q", async () => ({ v: 0 }), { ...noEarly });
      await Promise.race([
        carrierRead.ran,
        sleep(2_000).then(() => {
          throw new Error("no read carried the late reader's check");
        }),
      ]);
      if (checkAnswersFirst) {
        carrierRead.release();
        await carrier;
        leaderRead.release();
      } else {
        leaderRead.release();
        await leader;
        // The late reader looks meanwhile, finds the leader's answer unvouched and a check out
        // (due within twice the round trip): it waits for that, not for a read of its own.
        await sleep(50);
        carrierRead.release();
      }
      expect((await leader).value).toEqual({ v: 1 });
      const result = await late;
      expect(result.value, `check first: ${checkAnswersFirst}`).toEqual({ v: 1 });
      expect(result.status).toBe("HIT");
      // The leader's read ran before the counter was reset: the carrier's is the only request.
      expect(await h.requests(), `check first: ${checkAnswersFirst}`).toBe(1);
      expect(t.loads).toEqual([]);
    }
  });

  for (const [what, write] of [
    [
      "a version advance and another isolate's refill",
      async (t: Awaited<ReturnType<typeof setUp>>) => {
        t.setTruth(2);
        const other = h.cache({}, t.keys.prefix);
        await other.apply({ versions: { p: 2 } });
        // The refill lands a new, valid entry (another fill id) before the late reader begins.
        const refill = await other.getOrLoad("p", t.load, t.opts);
        expect(refill.value).toEqual({ v: 2 });
      },
    ],
    [
      "a tag bump and another isolate's refill",
      async (t: Awaited<ReturnType<typeof setUp>>) => {
        t.setTruth(2);
        const other = h.cache({}, t.keys.prefix);
        await other.invalidateTags("items");
        expect((await other.getOrLoad("p", t.load, t.opts)).value).toEqual({ v: 2 });
      },
    ],
    [
      "a key invalidation",
      async (t: Awaited<ReturnType<typeof setUp>>) => {
        t.setTruth(2);
        await h.cache({}, t.keys.prefix).apply({ keys: ["p"] });
      },
    ],
  ] as const) {
    it(`a check that finds another fill, or none, vouches for nothing: ${what}`, async () => {
      const t = await setUp();
      const leaderRead = t.held.hold(t.keys.entry("p"));
      const leader = t.engine().getOrLoad("p", t.load, t.opts);
      await leaderRead.ran; // the leader's read found v1 valid
      await write(t); // acknowledged before the late reader begins
      const late = t.engine().getOrLoad("p", t.load, t.opts);
      await sleep(5);
      // The check rides on a read of "q" and answers before the leader's (old) reply lands.
      await t.engine().getOrLoad("q", async () => ({ v: 0 }), { ...noEarly });
      leaderRead.release();
      expect((await leader).value).toEqual({ v: 1 }); // began before the write: either is fine
      expect((await late).value).toEqual({ v: 2 });
    });
  }
});
