import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, inject } from "vitest";
import { prng } from "../../../db/prng";
import { EdgeCache, type EdgeCacheOptions, FlightRegistry, KnownEntries } from "../../../src/cache";
import { startGateway } from "../../../tools/upstash-gateway/server";

/**
 * A private Upstash gateway (its own request counter and fault knobs) over the real Redis,
 * and EdgeCache instances on it with a fresh key prefix, as a Worker would build them.
 */
export async function cacheHarness(db?: number) {
  const stack = inject("stack");
  // The test stack's own Redis DB (TEST_REDIS_DB) unless told otherwise: keys carry a fresh
  // prefix, and parallel runs on one machine (each with its own TEST_REDIS_DB) never meet.
  db ??= stack.redisDb;
  const token = `cache-${randomBytes(8).toString("hex")}`;
  const gateway = await startGateway({
    port: 0,
    redisUrl: stack.redisUrl,
    tokens: { [token]: { db } },
  });
  const redis = new Redis({
    url: gateway.url,
    token,
    enableTelemetry: false,
    retry: { retries: 1, backoff: () => 25 },
  });

  async function control(path: string, method = "POST", body?: unknown) {
    const res = await fetch(`${gateway.url}/__gateway/${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`gateway ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { requests: number; commands: number };
  }

  return {
    redis,
    gateway,
    /**
     * A cache with a fresh prefix; instances made with the same prefix share Redis state. Each
     * models its own isolate (its own in-isolate flights and known entries) unless
     * `options.flights` / `options.known` are given: pass one `FlightRegistry` (and one
     * `KnownEntries`) to several instances to model requests of one isolate.
     */
    cache(options: Partial<EdgeCacheOptions> = {}, prefix = `t${randomBytes(4).toString("hex")}`) {
      return new EdgeCache({
        redis,
        prefix,
        onError: () => {},
        // Request counts stay exact: no background stats flush joins them unless a test asks
        // for one (telemetry.test.ts covers the flush).
        telemetry: { flushIntervalMs: 3_600_000 },
        ...options,
        flights: options.flights ?? new FlightRegistry(),
        known: options.known ?? new KnownEntries(),
      });
    },
    requests: async () => (await control("stats", "GET")).requests,
    /** The gateway's full counters (read-only vs writing calls, global-lock scripts…). */
    gatewayStats: async () =>
      (await control("stats", "GET")) as unknown as {
        requests: number;
        calls: { readOnly: number; writing: number; other: number };
        scripts: { globalLock: number; keyLocked: number };
      },
    resetCounter: () => control("reset"),
    faults: (body: Record<string, unknown>) => control("faults", "POST", body),
    clearFaults: () => control("faults", "DELETE"),
    close: () => gateway.close(),
  };
}

export type CacheHarness = Awaited<ReturnType<typeof cacheHarness>>;

/**
 * A loader you release by hand: holds a load mid-flight while a test races it. `started`
 * resolves once the engine has called `load` (i.e. after the read that granted the lease), so
 * tests wait for that instead of sleeping and hoping.
 */
export function gate<T>() {
  let open!: (value: T) => void;
  let markStarted!: () => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  const started = new Promise<void>((resolve) => {
    markStarted = resolve;
  });
  const load = () => {
    markStarted();
    return promise;
  };
  return { promise, open, started, load };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Deterministic random source for statistical tests (the seed script's mulberry32). */
export const seeded = prng;

/**
 * Runs the read path's scripts once through `cache` (hit, acquire, fill), so that a test
 * counting requests does not count the one-time NOSCRIPT → EVAL of a gateway that has not seen
 * them yet (the gateway rewrites flagged scripts, so their SHA is its own).
 */
export async function warmScripts(cache: EdgeCache): Promise<void> {
  const key = `warm-${randomBytes(4).toString("hex")}`;
  await cache.get(key);
  await cache.getOrLoad(key, async () => 0, { earlyRefresh: false });
  await cache.invalidate(key);
}

/**
 * The usual file setup: one harness for the file, its scripts warm (warmScripts) before the
 * first test, closed after the last.
 *
 * @example
 *   let h: CacheHarness;
 *   useWarmHarness((started) => {
 *     h = started;
 *   });
 */
export function useWarmHarness(set: (h: CacheHarness) => void): void {
  let started: CacheHarness | undefined;
  beforeAll(async () => {
    started = await cacheHarness();
    await warmScripts(started.cache());
    set(started);
  });
  afterAll(async () => {
    await started?.close();
  });
}
