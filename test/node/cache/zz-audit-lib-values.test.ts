import { describe, expect, it } from "vitest";
import { CacheWriteError, FlightRegistry, KnownEntries } from "../../../src/cache";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Audit probes: values JSON cannot round-trip. What a demanding user expects: the value a HIT
 * answers equals what the loader returned on the MISS (or the engine refuses the value clearly,
 * before writing anything).
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const pfx = () => `av${Math.random().toString(36).slice(2, 8)}`;

class Money {
  constructor(
    readonly cents: number,
    readonly currency: string,
  ) {}
  format() {
    return `${(this.cents / 100).toFixed(2)} ${this.currency}`;
  }
}

const cases: Array<[string, () => unknown]> = [
  ["Date", () => ({ updatedAt: new Date("2026-01-01T00:00:00Z") })],
  ["Map", () => ({ byId: new Map([[1, "a"]]) })],
  ["Set", () => ({ ids: new Set([1, 2]) })],
  ["undefined field", () => ({ a: 1, b: undefined })],
  ["undefined in array", () => [1, undefined, 3]],
  ["NaN", () => ({ score: Number.NaN })],
  ["Infinity", () => ({ score: Number.POSITIVE_INFINITY })],
  ["-0", () => ({ delta: -0 })],
  ["class instance", () => new Money(1234, "EUR")],
  ["big integer beyond 2^53 as number", () => ({ id: 2 ** 60 })],
  ["unicode", () => ({ s: "héllo 😀 \u2028 \u0000 end" })],
];

describe("JSON round trip: MISS value vs HIT value", () => {
  it.each(cases)("%s: HIT equals MISS", async (_, make) => {
    const prefix = pfx();
    const a = h.cache({}, prefix);
    const miss = await a.getOrLoad("k", async () => make(), noEarly);
    expect(miss.status).toBe("MISS");
    const b = h.cache({}, prefix); // another isolate
    const hit = await b.getOrLoad("k", async () => make(), noEarly);
    expect(hit.status).toBe("HIT");
    expect(hit.value).toStrictEqual(miss.value);
  });
});

describe("coalesced follower vs leader (one isolate)", () => {
  it("a follower gets the same kind of value as the leader (class instance keeps its prototype)", async () => {
    const prefix = pfx();
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    const one = () => h.cache({ flights, known }, prefix);
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const loader = async () => {
      await held;
      return new Money(1234, "EUR");
    };
    const leader = one().getOrLoad("k", loader, noEarly);
    await new Promise((r) => setTimeout(r, 30));
    const follower = one().getOrLoad("k", loader, noEarly);
    await new Promise((r) => setTimeout(r, 10));
    release();
    const [l, f] = await Promise.all([leader, follower]);
    expect(l.value instanceof Money).toBe(true);
    // What the follower got:
    expect({ followerIsMoney: f.value instanceof Money, status: f.status }).toEqual({
      followerIsMoney: true,
      status: "MISS",
    });
  });
});

describe("values JSON.stringify rejects or drops", () => {
  it("BigInt: set() throws a TypeError-like caller error, not CacheWriteError (use the outbox)", async () => {
    const cache = h.cache({}, pfx());
    const err = await cache.set("k", { id: 1n }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    // Demanding expectation: a caller bug is not reported as a Redis failure.
    expect(err).not.toBeInstanceOf(CacheWriteError);
  });

  it("BigInt via getOrLoad: the next read of the key is not held for the lease time", async () => {
    const prefix = pfx();
    const errors: string[] = [];
    const a = h.cache({ onError: (e, op) => errors.push(`${op}: ${String(e)}`) }, prefix);
    const first = await a.getOrLoad("k", async () => ({ id: 1n }), noEarly);
    expect(first.status).toBe("MISS");
    const b = h.cache({}, prefix); // another isolate, right after
    const t0 = Date.now();
    const second = await b.getOrLoad("k", async () => ({ id: 1n }), noEarly);
    const took = Date.now() - t0;
    console.log("BigInt: errors", errors, "second", second.status, "took", took, "ms");
    expect(took).toBeLessThan(500);
  });

  it("BigInt via getOrLoad, same isolate/engine: the second read is fast", async () => {
    const cache = h.cache({}, pfx());
    await cache.getOrLoad("k", async () => ({ id: 1n }), noEarly);
    const t0 = Date.now();
    const second = await cache.getOrLoad("k", async () => ({ id: 1n }), noEarly);
    const took = Date.now() - t0;
    console.log("BigInt same engine: second", second.status, "took", took, "ms");
    expect(took).toBeLessThan(500);
  });

  it("cyclic object via set(): error is not CacheWriteError", async () => {
    const cache = h.cache({}, pfx());
    const v: Record<string, unknown> = { a: 1 };
    v.self = v;
    const err = await cache.set("k", v).catch((e: unknown) => e);
    console.log("cyclic set error:", err);
    expect(err).not.toBeInstanceOf(CacheWriteError);
  });

  it("a function as the whole value: set() refuses it, it is not stored as something else", async () => {
    const prefix = pfx();
    const cache = h.cache({}, prefix);
    const out = await cache.set("fn", () => 1).catch((e: unknown) => e);
    console.log("set(function) ->", out);
    const got = await h.cache({}, prefix).get("fn");
    console.log("get after set(function) ->", got);
    expect(got).toBeNull();
  });

  it("a Symbol as the whole value via getOrLoad: not cached as null", async () => {
    const prefix = pfx();
    const cache = h.cache({}, prefix);
    const first = await cache.getOrLoad("sym", async () => Symbol("x"), noEarly);
    console.log("getOrLoad(symbol) ->", first.status, String(first.value));
    const again = await h.cache({}, prefix).getOrLoad("sym", async () => Symbol("y"), noEarly);
    console.log("second isolate ->", again.status, String(again.value));
    expect(again.value).not.toBeNull();
  });

  it("toJSON returning undefined: not cached as null", async () => {
    const prefix = pfx();
    const cache = h.cache({}, prefix);
    const weird = { toJSON: () => undefined };
    const first = await cache.getOrLoad("tj", async () => weird, noEarly);
    console.log("getOrLoad(toJSON undefined) ->", first.status);
    const again = await h.cache({}, prefix).getOrLoad("tj", async () => ({ ok: 1 }), noEarly);
    console.log("second isolate ->", again.status, again.value);
    expect(again.value).not.toBeNull();
  });
});
