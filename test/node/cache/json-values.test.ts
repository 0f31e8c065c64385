import { describe, expect, it } from "vitest";
import { FlightRegistry, KnownEntries } from "../../../src/cache";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Entries are JSON. A value JSON does not carry as is (a Date, a Map, undefined fields, NaN)
 * used to come back as the loader's own object on a MISS and as its JSON form on a HIT, so one
 * key changed type with the status (found by a library audit). Every status now answers the
 * JSON form.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const odd = () => ({
  at: new Date(0),
  byId: new Map([[1, "a"]]),
  gone: undefined,
  list: [1, undefined, 3],
  nan: Number.NaN,
  minusZero: -0,
});
const asJson = JSON.parse(JSON.stringify(odd()));

describe("values JSON does not carry as is", () => {
  it("a MISS, a coalesced follower, an L1 hit and a Redis HIT all answer the JSON form", async () => {
    const { L1Cache } = await import("../../../src/cache");
    const prefix = `jv${Date.now().toString(36)}`;
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    const l1 = new L1Cache(10, 60_000);
    const cache = h.cache({ flights, known, l1 }, prefix);
    const slow = async () => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      return odd();
    };
    const [miss, follower] = await Promise.all([
      cache.getOrLoad("k", slow),
      cache.getOrLoad("k", slow),
    ]);
    expect(miss.status).toBe("MISS");
    expect(miss.value).toStrictEqual(asJson);
    expect(follower.value).toStrictEqual(asJson);
    const fromL1 = await cache.getOrLoad("k", slow);
    expect(fromL1.value).toStrictEqual(asJson);
    // Another isolate: a Redis HIT.
    const hit = await h.cache({}, prefix).getOrLoad("k", slow);
    expect(hit.status).toBe("HIT");
    expect(hit.value).toStrictEqual(asJson);
  });

  it("an uncached value (cacheIf false) and a BYPASS answer the same form", async () => {
    const cache = h.cache();
    const uncached = await cache.getOrLoad("u", async () => odd(), { cacheIf: () => false });
    expect(uncached.value).toStrictEqual(asJson);
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    try {
      const bypass = await cache.getOrLoad("b", async () => odd());
      expect(bypass.status).toBe("BYPASS");
      expect(bypass.value).toStrictEqual(asJson);
    } finally {
      await h.clearFaults();
    }
  });
});
