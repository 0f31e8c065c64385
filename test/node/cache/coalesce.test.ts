import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../../src/cache";
import { nextCheckDelay } from "../../../src/cache/read/wait";
import { fillScript } from "../../../src/cache/scripts";
import { type CacheHarness, cacheHarness, gate, sleep, warmScripts } from "./harness";

/**
 * Coalescing across the per-request engines of one isolate (src/cache/read/coalesce.ts) and
 * waiting by the load time a lease holder announced (src/cache/read/wait.ts), counted by the
 * gateway. An engine built with the default options shares the module-scope registry, as the
 * per-request engines of src/runtime/services.ts do; `flights: new FlightRegistry()` models
 * another isolate.
 */
let h: CacheHarness;
const noEarly = { earlyRefresh: false as const };
const fresh = () => `co${randomBytes(4).toString("hex")}`;

/**
 * One engine per request, as src/runtime/services.ts builds them: default registry. Telemetry
 * flushes are held back so the request counts measure the read path only.
 */
const perRequest = (prefix: string, redis = h.redis) =>
  new EdgeCache({ redis, prefix, onError: () => {}, telemetry: { flushIntervalMs: 3_600_000 } });

beforeAll(async () => {
  h = await cacheHarness();
  // Load every script the read path uses, so EVALSHA never falls back to EVAL while counting.
  const warm = h.cache();
  await warm.getOrLoad("warm", async () => 1, noEarly);
  await warm.invalidate("warm");
});
afterAll(async () => {
  await h.close();
});

describe("one isolate: concurrent requests share one load (module-scope registry)", () => {
  it("200 concurrent cold reads, each through its own engine, 50 ms loader: 1 load, ≤ 5 Redis requests", async () => {
    const prefix = fresh();
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(50);
      return { id: 1, name: "Lamp" };
    };
    await h.resetCounter();
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        perRequest(prefix).getOrLoad("product:1", loader, { ...noEarly, ttl: 60_000 }),
      ),
    );
    // Per-request coalescing alone (the old engine) reads Redis 200 times and polls the lease.
    expect(loads).toBe(1);
    expect(results.every((r) => r.value.name === "Lamp" && r.status === "MISS")).toBe(true);
    expect(await h.requests()).toBeLessThanOrEqual(5); // read + fill
    // Each request owns its value: mutating one answer does not reach another request's.
    const first = results[0];
    if (first) first.value.name = "changed";
    expect(results[1]?.value.name).toBe("Lamp");
    expect((await perRequest(prefix).stats()).coalesced).toBe(199);
  });

  it("keeps prefixes apart: same key, two prefixes, two loads", async () => {
    const [a, b] = [fresh(), fresh()];
    const load = gate<string>();
    const first = perRequest(a).getOrLoad("k", load.load, noEarly);
    await load.started;
    const second = await perRequest(b).getOrLoad("k", async () => "from b", noEarly);
    expect(second).toMatchObject({ value: "from b", status: "MISS" });
    load.open("from a");
    expect((await first).value).toBe("from a");
  });

  it("keeps replica reads at different sync positions apart, and strict reads together", async () => {
    const prefix = fresh();
    // Two requests' clients: the same connection, different read-your-writes positions.
    const at = (position: string) => ({
      evalsha: (sha: string, keys: string[], args: unknown[]) => h.redis.evalsha(sha, keys, args),
      eval: (script: string, keys: string[], args: unknown[]) => h.redis.eval(script, keys, args),
      evalshaRo: (sha: string, keys: string[], args: unknown[]) =>
        h.redis.evalshaRo(sha, keys, args),
      evalRo: (script: string, keys: string[], args: unknown[]) =>
        h.redis.evalRo(script, keys, args),
      readYourWritesSyncToken: position,
    });
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(50);
      return "v";
    };
    const replica = { ...noEarly, consistency: "replica" as const };
    await Promise.all([
      perRequest(prefix, at("100") as never).getOrLoad("r", loader, replica),
      perRequest(prefix, at("200") as never).getOrLoad("r", loader, replica),
    ]);
    // Not coalesced in the isolate (the request at 200 may have written what the one at 100
    // cannot see yet): each read Redis itself; the lease still made it one load.
    expect((await perRequest(prefix).stats()).coalesced ?? 0).toBe(0);
    expect(loads).toBe(1);
    loads = 0;
    await Promise.all([
      perRequest(prefix, at("100") as never).getOrLoad("s", loader, noEarly),
      perRequest(prefix, at("200") as never).getOrLoad("s", loader, noEarly),
    ]);
    // Strict reads all read the primary: the second joins the first's flight.
    expect((await perRequest(prefix).stats()).coalesced).toBe(1);
    expect(loads).toBe(1);
  });

  it("keeps version keys apart: same key, two version keys, two loads", async () => {
    const prefix = fresh();
    const load = gate<{ v: number }>();
    const versionOf = (x: { v: number }) => x.v;
    const first = perRequest(prefix).getOrLoad("k", load.load, { versionKey: "a:1", versionOf });
    await load.started;
    // Redis holds one lease per key whatever the version key: the wait there is short.
    const second = await perRequest(prefix).getOrLoad("k", async () => ({ v: 2 }), {
      versionKey: "b:1",
      versionOf,
      waitBudget: 100,
    });
    expect(second.value.v).toBe(2);
    load.open({ v: 1 });
    expect((await first).value.v).toBe(1);
  });

  it("keeps callers with other own tags apart: a bump of a tag only the follower declares still reaches it", async () => {
    // Route A reads p under tag "a"; route B under "a" and "b". A's load began before the
    // source changed and tag b was bumped (acknowledged); B begins after that. Sharing A's
    // flight, B was handed A's value: its lease check and its fill compare only tag "a".
    const prefix = fresh();
    let row = 1;
    const started = gate<void>();
    const release = gate<void>();
    const slowLoad = async () => {
      const seen = row; // the source as the load read it
      started.open();
      await release.promise;
      return { v: seen };
    };
    const a = perRequest(prefix).getOrLoad("p", slowLoad, { ...noEarly, tags: ["a"] });
    await started.promise;
    row = 2;
    await perRequest(prefix).invalidateTags("b");
    const b = perRequest(prefix).getOrLoad("p", async () => ({ v: row }), {
      ...noEarly,
      tags: ["a", "b"],
      waitBudget: 3_000,
    });
    await sleep(20);
    release.open();
    expect((await a).value.v).toBe(1); // A overlapped the write: either value is right for it
    expect((await b).value.v).toBe(2);
  });

  it("a leader whose loader throws: its followers get the error, and nobody else loads", async () => {
    const prefix = fresh();
    let loads = 0;
    const failing = async () => {
      loads++;
      await sleep(50);
      throw new Error("database down");
    };
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => perRequest(prefix).getOrLoad("k", failing, noEarly)),
    );
    expect(loads).toBe(1);
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(
      results.map((r) => (r.status === "rejected" ? (r.reason as Error).message : "")),
    ).toEqual(Array(20).fill("database down"));
    // The lease was released: the next request loads at once.
    const next = await perRequest(prefix).getOrLoad("k", async () => "back", noEarly);
    expect(next).toMatchObject({ value: "back", status: "MISS" });
  });

  it("a leader whose loader throws with a fail-safe entry: every follower gets it too", async () => {
    const prefix = fresh();
    const opts = { ...noEarly, ttl: 50, jitter: 0, failSafe: 60_000 };
    await perRequest(prefix).getOrLoad("k", async () => "kept", opts);
    await sleep(120); // past fresh and grace: only the fail-safe copy is left
    let loads = 0;
    const failing = async () => {
      loads++;
      await sleep(30);
      throw new Error("database down");
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => perRequest(prefix).getOrLoad("k", failing, opts)),
    );
    expect(loads).toBe(1);
    expect(results.every((r) => r.value === "kept" && r.failSafe && r.status === "STALE")).toBe(
      true,
    );
  });

  it("a follower whose budget runs out and whose own load fails gets the fail-safe entry; without one, the error", async () => {
    const prefix = fresh();
    const failing = async (): Promise<string> => {
      throw new Error("database down");
    };
    for (const failSafe of [60_000, false] as const) {
      const key = `k-${failSafe}`;
      const opts = { ...noEarly, ttl: 50, jitter: 0, failSafe, waitBudget: 150, leaseTtl: 3_000 };
      await perRequest(prefix).getOrLoad(key, async () => "kept", opts);
      await sleep(120); // past fresh and grace: only a fail-safe copy can be left
      const slow = gate<string>(); // the leader's load outlasts the follower's wait budget
      const leader = perRequest(prefix).getOrLoad(key, slow.load, opts);
      await slow.started;
      const follower = perRequest(prefix).getOrLoad(key, failing, opts);
      if (failSafe) {
        const got = await follower;
        expect(got).toMatchObject({ value: "kept", status: "STALE", failSafe: true });
        expect(got.waitedMs).toBeGreaterThanOrEqual(100);
      } else {
        await expect(follower).rejects.toThrow("database down");
      }
      slow.open("new");
      expect((await leader).value).toBe("new");
    }
  });

  it("a leader that never finishes (its request cancelled): followers take over after the lease TTL, load and fill once", async () => {
    const prefix = fresh();
    const hung = gate<string>(); // never opened: the leader's request was cancelled mid-load
    const opts = { ...noEarly, leaseTtl: 300, waitBudget: 3_000 };
    void perRequest(prefix).getOrLoad("k", hung.load, opts);
    await hung.started;
    let loads = 0;
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        perRequest(prefix).getOrLoad(
          "k",
          async () => {
            loads++;
            await sleep(20);
            return "fresh";
          },
          opts,
        ),
      ),
    );
    expect(Date.now() - started).toBeLessThan(3_000); // the lease TTL, not the wait budget
    expect(results.every((r) => r.value === "fresh")).toBe(true);
    expect(loads).toBe(1); // one follower took over; the others joined its flight
    const probe = perRequest(prefix);
    expect((await probe.inspect("k")).entry?.value).toBe("fresh");
    expect((await probe.stats()).fills).toBe(1);
  });

  it("a leader stuck in its loader past the follower's wait budget: the follower loads itself and does not fill", async () => {
    const prefix = fresh();
    const held = gate<string>();
    const leader = perRequest(prefix).getOrLoad("k", held.load, { leaseTtl: 10_000 });
    await held.started;
    const follower = await perRequest(prefix).getOrLoad("k", async () => "own", {
      waitBudget: 200,
    });
    expect(follower).toMatchObject({ value: "own", status: "MISS" });
    expect((await perRequest(prefix).inspect("k")).entry).toBeNull();
    held.open("leader");
    expect((await leader).value).toBe("leader");
  });
});

describe("one isolate: followers that joined before the load began", () => {
  it("answer when the load ends, without waiting for the fill; a later joiner waits for it", async () => {
    const prefix = fresh();
    const flights = new FlightRegistry();
    const fillHeld = gate<void>();
    let fillsSeen = 0;
    // Holds the fill (fill.lua) until the test releases it; everything else goes through.
    const holding = {
      evalsha: async (sha: string, keys: string[], args: unknown[]) => {
        if (sha === fillScript.sha1) {
          fillsSeen++;
          await fillHeld.promise;
        }
        return h.redis.evalsha(sha, keys, args);
      },
      eval: (script: string, keys: string[], args: unknown[]) => h.redis.eval(script, keys, args),
    };
    const engine = () =>
      new EdgeCache({
        redis: holding,
        prefix,
        onError: () => {},
        flights,
        telemetry: { flushIntervalMs: 3_600_000 },
      });
    const load = gate<string>();
    const background: Promise<unknown>[] = [];
    const opts = { ...noEarly, waitUntil: (p: Promise<unknown>) => background.push(p) };
    // The leader and a follower that joins while the leader's acquire is still out.
    const leader = engine().getOrLoad("k", load.load, opts);
    const early = engine().getOrLoad("k", async () => "never", opts);
    await load.started;
    // A follower that joins while the load runs: the load may have read the source before
    // this request began, so only the fill's compare-and-set can vouch for it.
    const late = engine().getOrLoad("k", async () => "never", opts);
    let lateDone = false;
    void late.then(() => {
      lateDone = true;
    });
    load.open("v");
    expect((await leader).value).toBe("v");
    expect((await early).value).toBe("v"); // the fill is still held
    expect(fillsSeen).toBe(1);
    await sleep(30);
    expect(lateDone).toBe(false);
    fillHeld.open();
    expect((await late).value).toBe("v");
    await Promise.all(background);
  });
});

describe("one isolate: a write in between (the flight must not outlive it)", () => {
  // One isolate's per-request engines, sharing a registry of their own.
  const engines = (prefix: string) => {
    const flights = new FlightRegistry();
    return () =>
      new EdgeCache({
        redis: h.redis,
        prefix,
        onError: () => {},
        flights,
        telemetry: { flushIntervalMs: 3_600_000 },
      });
  };

  for (const [what, write] of [
    ["a key invalidation", (c: EdgeCache) => c.apply({ keys: ["item"] })],
    ["a version advance", (c: EdgeCache) => c.apply({ versions: { item: 2 } })],
    ["a tag bump", (c: EdgeCache) => c.invalidateTags("items")],
  ] as const) {
    it(`a read that starts after ${what} was acknowledged never gets the load that began before it`, async () => {
      const engine = engines(fresh());
      const opts = {
        ...noEarly,
        tags: ["items"],
        versionKey: "item",
        versionOf: (v: { v: number }) => v.v,
      };
      let truth = 1;
      let loads = 0; // loads that began after the write
      const held = gate<void>();
      // A loader reads the source when it is called (the engine may call the leader's again, to
      // reload after a refused fill: read/load.ts); this one's first call is then held.
      const slowLoad = async () => {
        const v = truth;
        if (v === 2) loads++;
        await held.load();
        return { v };
      };
      // 1. A request loads v1 slowly; others of the isolate join it before the write.
      const leader = engine().getOrLoad("item", slowLoad, opts);
      await held.started;
      const current = async () => {
        loads++;
        return { v: truth };
      };
      const before = engine().getOrLoad("item", current, opts);
      // 2. The write commits v2 and is acknowledged.
      truth = 2;
      await write(engine());
      // 3. A request that starts now must see v2, although v1's load is still in flight.
      const after = engine().getOrLoad("item", current, opts);
      await sleep(20);
      held.open();
      expect((await leader).value).toEqual({ v: 1 }); // began before the write: either is fine
      expect([1, 2]).toContain((await before).value.v);
      const late = await after;
      expect(late.value).toEqual({ v: 2 });
      // The two that joined the refused flight share one new load: the leader's reload, for which
      // the refused fill took the lease again, or a new flight's.
      expect(loads).toBe(1);
      // And the cache holds v2 from now on.
      expect((await engine().getOrLoad("item", async () => ({ v: 0 }), opts)).value).toEqual({
        v: 2,
      });
    });
  }
});

describe("across isolates: wait by the announced load time instead of polling", () => {
  it("a waiter in another isolate sleeps through a 200 ms load and looks once: ≤ 3 requests", async () => {
    const other = await cacheHarness(); // its own gateway token: its own request counter
    try {
      const prefix = fresh();
      const holder = h.cache({}, prefix); // isolate A
      const waiter = new EdgeCache({
        redis: other.redis,
        prefix,
        onError: () => {},
        flights: new FlightRegistry(), // isolate B
        telemetry: { flushIntervalMs: 3_600_000 },
      });
      const slow = async () => {
        await sleep(200);
        return "v";
      };
      await holder.getOrLoad("k", slow, noEarly); // A has measured this load once
      await holder.invalidate("k");
      await warmScripts(waiter);

      const load = gate<string>();
      const holding = holder.getOrLoad("k", load.load, noEarly);
      await load.started;
      setTimeout(() => load.open("v2"), 200);
      await other.resetCounter();
      const result = await waiter.getOrLoad("k", slow, { ...noEarly, waitBudget: 5_000 });
      expect(result).toMatchObject({ value: "v2", status: "HIT" });
      // Polling with a 10→200 ms backoff makes 6 or more.
      expect(await other.requests()).toBeLessThanOrEqual(3);
      await holding;
    } finally {
      await other.close();
    }
  });

  it("the announcement comes from the entry's measured load time when the entry is there", async () => {
    const prefix = fresh();
    const holder = h.cache({}, prefix);
    const opts = { ...noEarly, ttl: 60_000, tags: ["t"] };
    await h.cache({}, prefix).getOrLoad(
      "k",
      async () => {
        // Above 150: a Node timer may fire a fraction of a ms early by performance.now(), and
        // the stored lt is rounded (a full-suite run announced 149).
        await sleep(155);
        return "v";
      },
      opts,
    );
    await holder.invalidateTags("t"); // the entry stays until read, invalid, with its lt
    const load = gate<string>();
    const holding = holder.getOrLoad("k", load.load, opts);
    await load.started;
    const lease = await h.redis.get<string>(holder.keys.lease("k"));
    const announced = Number(String(lease).split(".")[1]);
    expect(announced).toBeGreaterThanOrEqual(150); // the holder's isolate had measured nothing
    load.open("v2");
    await holding;
  });

  it("a STALE value is served at once, in one request, while another isolate refreshes", async () => {
    const prefix = fresh();
    const opts = { ...noEarly, ttl: 50, staleTtl: 60_000, jitter: 0 };
    const a = h.cache({}, prefix);
    const b = h.cache({}, prefix);
    await a.getOrLoad("k", async () => "old", opts);
    await sleep(100);
    const refresh = gate<string>();
    const first = await a.getOrLoad("k", refresh.load, opts);
    expect(first.status).toBe("STALE");
    await refresh.started;
    await h.resetCounter();
    const second = await b.getOrLoad("k", async () => "never", opts);
    expect(second).toMatchObject({ value: "old", status: "STALE" });
    expect(await h.requests()).toBe(1);
    refresh.open("new");
    await a.settle();
  });

  // A 200 ms load (the benchmark runs the 50 ms case): the bound is about how often a waiter
  // asks, and a longer load keeps a loaded CI machine's scheduling noise small beside it.
  // Blind polling (10 -> 200 ms backoff) would ask 6 or more times per waiter.
  it("ten isolates, 20 requests each, a cold key with a 200 ms loader: 1 load, ≤ 3 requests per isolate", async () => {
    const isolates = await Promise.all(Array.from({ length: 10 }, () => cacheHarness()));
    try {
      const prefix = fresh();
      const registries = isolates.map(() => new FlightRegistry());
      const knowns = isolates.map(() => new KnownEntries());
      const engine = (i: number) =>
        new EdgeCache({
          redis: (isolates[i] as CacheHarness).redis,
          prefix,
          onError: () => {},
          flights: registries[i],
          known: knowns[i],
          // Counts only the read path: no telemetry flush may land inside the measurement.
          telemetry: { flushIntervalMs: 3_600_000 },
        });
      let loads = 0;
      const loader = async () => {
        loads++;
        await sleep(200);
        return "v";
      };
      // Warm isolates: each has served loads of this prefix before (its estimate).
      await Promise.all(isolates.map((_, i) => engine(i).getOrLoad(`other:${i}`, loader, noEarly)));
      await Promise.all(isolates.map((_, i) => warmScripts(engine(i))));
      loads = 0;
      await Promise.all(isolates.map((iso) => iso.resetCounter()));
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, n) =>
          engine(n % 10).getOrLoad("cold", loader, { ...noEarly, waitBudget: 5_000 }),
        ),
      );
      expect(loads).toBe(1);
      expect(results.every((r) => r.value === "v")).toBe(true);
      const perIsolate = await Promise.all(isolates.map((iso) => iso.requests()));
      expect(Math.max(...perIsolate)).toBeLessThanOrEqual(3);
    } finally {
      await Promise.all(isolates.map((iso) => iso.close()));
    }
  });
});

describe("nextCheckDelay (when a waiter looks again)", () => {
  const mid = () => 0.5;
  it("sleeps the announced time plus a margin (the look lands as the holder's fill does)", () => {
    const { delay, backoff } = nextCheckDelay(
      { eta: 180, estimate: 200, leasePttl: 1_800, backoffs: 0 },
      mid,
    );
    expect(backoff).toBe(false);
    expect(delay).toBeGreaterThan(180);
    expect(delay).toBeLessThanOrEqual(180 + 30);
  });
  it("backs off when overdue, by at least half the announced time", () => {
    const { delay, backoff } = nextCheckDelay(
      { eta: -5, estimate: 200, leasePttl: 1_800, backoffs: 0 },
      mid,
    );
    expect(backoff).toBe(true);
    expect(delay).toBe(100);
  });
  it("falls back to the 10 ms exponential backoff when nothing was announced", () => {
    const delays = [0, 1, 2, 5].map(
      (backoffs) => nextCheckDelay({ eta: undefined, leasePttl: 1_800, backoffs }, mid).delay,
    );
    expect(delays).toEqual([10, 20, 40, 200]);
  });
  it("never sleeps past the lease's expiry: then it takes the lease over", () => {
    expect(nextCheckDelay({ eta: 900, leasePttl: 40, backoffs: 0 }, mid).delay).toBe(41);
  });
});
