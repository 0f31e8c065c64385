import { describe, expect, it } from "vitest";
import { LoadTimeoutError } from "../../../src/cache";
import { keySpace } from "../../../src/cache/keys";
import { type CacheHarness, sleep, useWarmHarness } from "./harness";

/**
 * `loadTimeout`: a loader that hangs (an origin fetch without a timeout) used to hold its
 * request until the runtime killed it, and every follower that took over after the lease
 * expired started another load that hung too (found by a library audit).
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const hang = () => new Promise<never>(() => {});

describe("loadTimeout", () => {
  it("a hung load rejects with LoadTimeoutError at the deadline, aborts its signal and gives the lease back", async () => {
    const prefix = `lt${Date.now().toString(36)}a`;
    const cache = h.cache({}, prefix);
    let signal: AbortSignal | undefined;
    const started = Date.now();
    const error = await cache
      .getOrLoad(
        "k",
        (s) => {
          signal = s;
          return hang();
        },
        { loadTimeout: 100 },
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const took = Date.now() - started;
    expect(error).toBeInstanceOf(LoadTimeoutError);
    expect(took).toBeGreaterThanOrEqual(95);
    expect(took).toBeLessThan(1_000);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBe(error);
    // The lease is gone: another isolate loads at once instead of waiting out leaseTtl (2 s).
    expect(await h.redis.exists(keySpace(prefix).lease("k"))).toBe(0);
    const other = Date.now();
    const next = await h.cache({}, prefix).getOrLoad("k", async () => "v", { loadTimeout: 100 });
    expect(next).toMatchObject({ status: "MISS", value: "v" });
    expect(Date.now() - other).toBeLessThan(500);
  });

  it("the isolate's followers share the one load and its error: one loader call, not one each", async () => {
    const { FlightRegistry } = await import("../../../src/cache");
    const flights = new FlightRegistry();
    const cache = h.cache({ flights });
    let calls = 0;
    const load = () => {
      calls++;
      return hang();
    };
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => cache.getOrLoad("shared", load, { loadTimeout: 100 })),
    );
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(
      results.every(
        (r) => r.status === "rejected" && (r.reason as Error) instanceof LoadTimeoutError,
      ),
    ).toBe(true);
    expect(calls).toBe(1);
  });

  it("a value kept for fail-safe is served when the reload times out", async () => {
    const cache = h.cache();
    await cache.getOrLoad("fs", async () => "old", { ttl: 50, failSafe: true });
    await sleep(80);
    const result = await cache.getOrLoad("fs", hang, { ttl: 50, failSafe: true, loadTimeout: 100 });
    expect(result).toMatchObject({ status: "STALE", value: "old", failSafe: true });
  });

  it("a load within the deadline is untouched, and its signal never aborts", async () => {
    const cache = h.cache();
    let signal: AbortSignal | undefined;
    const result = await cache.getOrLoad(
      "ok",
      async (s) => {
        signal = s;
        await sleep(20);
        return "v";
      },
      { loadTimeout: 500 },
    );
    expect(result).toMatchObject({ status: "MISS", value: "v" });
    await sleep(550);
    expect(signal?.aborted).toBe(false);
  });

  it("a loadTimeout that is not a positive number of ms throws before any request", async () => {
    const cache = h.cache();
    await h.resetCounter();
    for (const bad of [0, -1, Number.NaN, 1.5e12]) {
      await expect(cache.getOrLoad("x", async () => 1, { loadTimeout: bad })).rejects.toThrow();
    }
    expect(await h.requests()).toBe(0);
  });
});
