import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry } from "../../../src/cache";
import { resolveOptions } from "../../../src/cache/options";
import { type CacheHarness, cacheHarness, sleep } from "./harness";

/**
 * A load slower than its lease (src/cache/read/keep-alive.ts). The lease is short so that a dead
 * holder frees its key soon; before it was kept alive, a load that outlived it lost the single
 * flight: readers of another isolate took the lease over and loaded too, and the isolate's own
 * followers took their leader for dead. An audit measured it on the Worker: 30 concurrent reads
 * of a key whose query took 4 s (a locked table) made 30 queries.
 */
let h: CacheHarness;
const fresh = () => `ka${randomBytes(4).toString("hex")}`;

/** An engine of isolate `flights` (its own registry: isolates share no flights). */
const isolate = (prefix: string, flights: FlightRegistry) =>
  new EdgeCache({
    redis: h.redis,
    prefix,
    flights,
    onError: () => {},
    telemetry: { flushIntervalMs: 3_600_000 },
  });

beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});

describe("a load slower than its lease", () => {
  it("keeps the lease: one load for the readers of its isolate and of another, and the fill lands", async () => {
    const prefix = fresh();
    const [a, b] = [new FlightRegistry(), new FlightRegistry()];
    let loads = 0;
    const slow = async () => {
      loads++;
      await sleep(1_000);
      return { v: 1 };
    };
    // A lease of 300 ms under a 1 s load: three extensions keep it. Only a load with a
    // deadline keeps its lease (a hung loader without one must lose it).
    const opts = { leaseTtl: 300, loadTimeout: 2_000, earlyRefresh: false as const };
    const first = isolate(prefix, a).getOrLoad("item", slow, opts);
    await sleep(50);
    const sameIsolate = Array.from({ length: 10 }, () =>
      isolate(prefix, a).getOrLoad("item", slow, opts),
    );
    await sleep(400); // past the lease's first TTL
    const otherIsolate = Array.from({ length: 5 }, () =>
      isolate(prefix, b).getOrLoad("item", slow, opts),
    );
    const results = await Promise.all([first, ...sameIsolate, ...otherIsolate]);
    expect(results.map((r) => r.value)).toEqual(results.map(() => ({ v: 1 })));
    expect(loads).toBe(1);
    expect(results[0]?.status).toBe("MISS");
    // The fill landed under the kept lease: the next read is a hit.
    expect((await isolate(prefix, b).getOrLoad("item", slow, opts)).status).toBe("HIT");
    expect((await isolate(prefix, a).stats()).lease_extends).toBeGreaterThanOrEqual(2);
  });

  it("with loadTimeout, waiters wait out the whole load instead of loading after the default budget", async () => {
    const prefix = fresh();
    const [a, b] = [new FlightRegistry(), new FlightRegistry()];
    let loads = 0;
    const slow = async () => {
      loads++;
      await sleep(3_000); // longer than the default waitBudget (2.5 s)
      return { v: 1 };
    };
    const opts = { leaseTtl: 500, loadTimeout: 4_000, earlyRefresh: false as const };
    const first = isolate(prefix, a).getOrLoad("item", slow, opts);
    await sleep(50);
    const others = [
      ...Array.from({ length: 5 }, () => isolate(prefix, a).getOrLoad("item", slow, opts)),
      ...Array.from({ length: 5 }, () => isolate(prefix, b).getOrLoad("item", slow, opts)),
    ];
    const results = await Promise.all([first, ...others]);
    expect(loads).toBe(1);
    expect(results.every((r) => (r.value as { v: number }).v === 1)).toBe(true);
  }, 15_000);

  it("a load without loadTimeout keeps nothing alive: a hung holder frees the key within leaseTtl", async () => {
    const prefix = fresh();
    // A hung loader and no deadline: it looks like a slow one, but must not hold the key.
    void isolate(prefix, new FlightRegistry()).getOrLoad("item", () => new Promise(() => {}), {
      leaseTtl: 300,
      earlyRefresh: false,
    });
    await sleep(50);
    const started = Date.now();
    const taken = await isolate(prefix, new FlightRegistry()).getOrLoad(
      "item",
      async () => ({ v: 2 }),
      { leaseTtl: 300, earlyRefresh: false },
    );
    expect(taken.value).toEqual({ v: 2 });
    // Taken over once the lease expired (a kept lease would hold it until the 2.5 s budget,
    // and the reader would then load without filling).
    expect(Date.now() - started).toBeLessThan(1_500);
    const again = await isolate(prefix, new FlightRegistry()).getOrLoad("item", async () => ({
      v: 3,
    }));
    expect(again.status).toBe("HIT");
    expect((await isolate(prefix, new FlightRegistry()).stats()).lease_extends ?? 0).toBe(0);
  });
});

describe("the wait budget follows loadTimeout", () => {
  it("defaults to loadTimeout + leaseTtl when that is longer than 2.5 s; an explicit budget stands", () => {
    expect(resolveOptions("k", {}, {}).waitBudget).toBe(2_500);
    expect(resolveOptions("k", {}, { loadTimeout: 1_000 }).waitBudget).toBe(3_000);
    expect(resolveOptions("k", {}, { loadTimeout: 10_000, leaseTtl: 1_000 }).waitBudget).toBe(
      11_000,
    );
    expect(resolveOptions("k", { loadTimeout: 5_000 }, {}).waitBudget).toBe(7_000);
    expect(resolveOptions("k", {}, { loadTimeout: 10_000, waitBudget: 100 }).waitBudget).toBe(100);
  });
});
