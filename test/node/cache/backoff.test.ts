import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoaderBackoffError } from "../../../src/cache";
import { backingOff, backoffSize, MAX_KEYS, withBackoff } from "../../../src/cache/backoff";
import { type CacheHarness, cacheHarness, sleep } from "./harness";

/**
 * Loader backoff (src/cache/backoff.ts): after a loader fails for a key, callers within
 * `loaderBackoff` ms do not call it; they get the fail-safe value or the error at once. Against
 * real Redis through a private gateway (request counts from the gateway's counter).
 */
let h: CacheHarness;
beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});

const down = () => new Error("connect ECONNREFUSED (Postgres down)");

/** A loader that counts its calls and fails while `failing` is true. */
function source<T>(value: T) {
  const state = { calls: 0, failing: true };
  const load = async () => {
    state.calls++;
    if (state.failing) throw down();
    return value;
  };
  return { state, load };
}

describe("loader backoff", () => {
  it("without a fail-safe entry: fails fast within the interval, with the loader's error as cause", async () => {
    const cache = h.cache();
    const src = source("v");
    const opts = { loaderBackoff: 60_000 };
    await expect(cache.getOrLoad("k", src.load, opts)).rejects.toThrow(/ECONNREFUSED/);
    expect(src.state.calls).toBe(1);

    // Ten more callers inside the interval: none reaches the source; each gets the backoff
    // error, carrying the loader's error as cause (the HTTP layer maps that to 503).
    for (let i = 0; i < 10; i++) {
      const error = await cache.getOrLoad("k", src.load, opts).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LoaderBackoffError);
      expect((error as LoaderBackoffError).cause).toBeInstanceOf(Error);
      expect((error as LoaderBackoffError).retryInMs).toBeLessThanOrEqual(60_000);
    }
    expect(src.state.calls).toBe(1);
    expect(backingOff(cache.keys.prefix, "k")).toBe(true);
  });

  it("calls the source again once the interval is over; a success clears the record", async () => {
    const cache = h.cache();
    const src = source("v");
    const opts = { loaderBackoff: 200 };
    await expect(cache.getOrLoad("k", src.load, opts)).rejects.toThrow(/ECONNREFUSED/);
    await sleep(250); // only "at least the interval": a slow machine sleeping longer is fine
    src.state.failing = false;
    const result = await cache.getOrLoad("k", src.load, opts);
    expect(result).toMatchObject({ value: "v", status: "MISS" });
    expect(src.state.calls).toBe(2);
    expect(backingOff(cache.keys.prefix, "k")).toBe(false);
  });

  it("with a fail-safe entry: serves it without calling the source, one request per read", async () => {
    const cache = h.cache();
    const opts = { ttl: 50, jitter: 0, failSafe: 60_000, earlyRefresh: false as const };
    await cache.getOrLoad("fs", async () => "last good", opts);
    await sleep(80); // past fu = su: kept only for fail-safe
    const src = source("new");
    const backoffOpts = { ...opts, loaderBackoff: 5_000 };

    const first = await cache.getOrLoad("fs", src.load, backoffOpts);
    expect(first).toMatchObject({ value: "last good", status: "STALE", failSafe: true });
    expect(src.state.calls).toBe(1);

    // Fifty readers over five engines of the prefix (one isolate): the source is not called
    // again, and each read costs its read script plus a lease release, no load.
    const engines = Array.from({ length: 5 }, () => h.cache({}, cache.keys.prefix));
    await h.resetCounter();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (engines[i % 5] ?? cache).getOrLoad("fs", src.load, backoffOpts),
      ),
    );
    for (const r of results) expect(r).toMatchObject({ value: "last good", failSafe: true });
    expect(src.state.calls).toBe(1);
    expect(await h.requests()).toBeLessThanOrEqual(100);

    // Counted: each skipped load shows up as backoff_skips in the shared stats.
    const stats = await cache.stats();
    expect(stats.backoff_skips).toBeGreaterThanOrEqual(1);
  });

  it("without backoff (the default) every caller calls the failing source", async () => {
    const cache = h.cache();
    const src = source("v");
    for (let i = 0; i < 5; i++) {
      await expect(cache.getOrLoad("nb", src.load)).rejects.toThrow(/ECONNREFUSED/);
    }
    expect(src.state.calls).toBe(5);
  });

  it("is per prefix and key", async () => {
    const a = h.cache();
    const b = h.cache();
    const src = source("v");
    await expect(a.getOrLoad("same", src.load, { loaderBackoff: 5_000 })).rejects.toThrow();
    src.state.failing = false;
    // Another key of the prefix, and the same key under another prefix, still load.
    await expect(a.getOrLoad("other", src.load, { loaderBackoff: 5_000 })).resolves.toMatchObject({
      status: "MISS",
    });
    await expect(b.getOrLoad("same", src.load, { loaderBackoff: 5_000 })).resolves.toMatchObject({
      status: "MISS",
    });
    await expect(a.getOrLoad("same", src.load, { loaderBackoff: 5_000 })).rejects.toBeInstanceOf(
      LoaderBackoffError,
    );
  });

  it("applies on the BYPASS path too: with Redis down a failing source is not hammered", async () => {
    const cache = h.cache();
    const src = source("v");
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    try {
      await expect(cache.getOrLoad("byp", src.load, { loaderBackoff: 5_000 })).rejects.toThrow(
        /ECONNREFUSED/,
      );
      await expect(
        cache.getOrLoad("byp", src.load, { loaderBackoff: 5_000 }),
      ).rejects.toBeInstanceOf(LoaderBackoffError);
      expect(src.state.calls).toBe(1);
    } finally {
      await h.clearFaults();
    }
  });

  it("keeps at most MAX_KEYS records, dropping the oldest (pure)", async () => {
    const failing = async () => {
      throw down();
    };
    const prefix = "bounded";
    for (let i = 0; i <= MAX_KEYS + 10; i++) {
      await withBackoff(prefix, `k${i}`, failing, 60_000)().catch(() => {});
    }
    expect(backoffSize()).toBeLessThanOrEqual(MAX_KEYS);
    expect(backingOff(prefix, "k0")).toBe(false); // the oldest went first
    expect(backingOff(prefix, `k${MAX_KEYS + 10}`)).toBe(true);
  });
});
