import { EngineContext } from "./context";
import { keySpace } from "./keys";
import { L1Cache } from "./l1";
import { type FlightRegistry, isolateFlights } from "./read/flights";
import { isolateKnown, type KnownEntries } from "./read/known";
import type { ScriptClient } from "./redis";
import { DEFAULT_SHARDS, type IsolateTelemetry, telemetryFor } from "./telemetry";
import type { EntryOptions } from "./types";

/**
 * What an engine is built from. Only `redis` is required.
 *
 * @example
 * ```ts
 * import { Redis } from "@upstash/redis/cloudflare";
 * const cache = new EdgeCache({
 *   // anything with evalsha + eval; bounded (one retry, a 1 s deadline per command), so Redis
 *   // down means BYPASS, not seconds of retries: the engine has no deadline of its own
 *   redis: Redis.fromEnv(env, {
 *     retry: { retries: 1, backoff: () => 25 },
 *     signal: () => AbortSignal.timeout(1_000),
 *     enableAutoPipelining: false,
 *     responseEncoding: false,
 *   }),
 *   prefix: "shop",                       // keys shop:e:…, shop:v:…
 *   defaults: { ttl: 300_000, staleTtl: 60_000, waitUntil: ctx.waitUntil.bind(ctx) },
 *   onError: (error, operation) => console.warn(`cache ${operation}`, error),
 * });
 * ```
 */
export interface EdgeCacheOptions {
  redis: ScriptClient;
  /** Prefix of every Redis key. Default "ec". */
  prefix?: string;
  /** Defaults merged under every call's options. */
  defaults?: EntryOptions<unknown>;
  /** Random source in [0, 1): jitter, XFetch, sampling, lease tokens' entropy is separate. */
  random?: () => number;
  /**
   * Per-isolate L1 (off by default): bounded staleness of `ttlMs` (≤ 1 s recommended). Pass one
   * L1Cache created at module scope to share it across requests (engines are per request).
   */
  l1?: L1Cache | { maxEntries?: number; ttlMs?: number };
  /** Hot-key sampling in the isolate. Default: 1 in 10 reads, 60 s windows, 5 kept. */
  hotKeys?: { sampleRate?: number; windowMs?: number; windows?: number; decay?: number };
  /**
   * Counters and hot-key samples are kept in the isolate and flushed in the background
   * (`waitUntil`) at most every `flushIntervalMs` (default 1000), or sooner once `maxBatch`
   * (default 256) distinct counters and keys are pending, to the isolate's one of `shards`
   * (default 8; readers and writers must agree) stats and hot-key shards. `isolate` replaces
   * the module-scope telemetry of the prefix (tests simulating several isolates).
   */
  telemetry?: {
    shards?: number;
    flushIntervalMs?: number;
    maxBatch?: number;
    isolate?: IsolateTelemetry;
  };
  /**
   * Coalesce concurrent loads of one key inside this isolate before asking Redis: every engine
   * of the isolate (one per request) shares one load per prefix, key and version key. Default on.
   */
  coalesce?: boolean;
  /**
   * Where in-isolate flights and measured load times live. Default: the module-scope registry
   * shared by all engines of the isolate. Pass a `new FlightRegistry()` to keep engines apart
   * (tests that model several isolates in one process; two Redis databases under one prefix).
   */
  flights?: FlightRegistry;
  /**
   * What the isolate learned of entries (their tags, whether they were fresh): module scope by
   * default, like `flights`. Pass a `new KnownEntries()` to model a separate isolate in tests.
   */
  known?: KnownEntries;
  /**
   * Called on every swallowed cache fault (Redis down, background refresh failure), and with
   * operation "fill input" when a loaded value cannot be cached because of the value or the
   * caller's functions (a BigInt, `tagsOf`/`versionOf`/`cacheIf` throwing or giving no valid
   * answer): the caller's error, not counted as a Redis error. What the hook throws is dropped.
   */
  onError?: (error: unknown, operation: string) => void;
}

/** When an engine sends its isolate's telemetry, and to how many shards (resolved `telemetry`). */
export interface FlushPolicy {
  shards: number;
  flushIntervalMs: number;
  maxBatch: number;
}

/**
 * `EdgeCacheOptions` with every default applied: the engine's context (what the read and write
 * modules work with: client, key layout, the isolate's flights, known entries and telemetry),
 * the per-call defaults, whether to coalesce, and the flush policy. Pure: no I/O, so an engine
 * per request stays cheap.
 *
 * @example
 *   const { ctx, flush } = engineSetup({ redis, prefix: "shop" });
 *   ctx.keys.entry("product:1"); // "shop:e:product:1"
 *   flush.flushIntervalMs;       // 1000
 */
export function engineSetup(options: EdgeCacheOptions): {
  ctx: EngineContext;
  defaults: EntryOptions<unknown>;
  coalesce: boolean;
  flush: FlushPolicy;
} {
  // A miswired binding (undefined, the env object, a URL string) would otherwise make every
  // read a silent BYPASS, heard only by onError: fail where the engine is built instead.
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      'EdgeCache: pass the options, e.g. new EdgeCache({ redis, prefix: "shop" })',
    );
  }
  if (typeof (options.redis as Partial<ScriptClient> | undefined)?.evalsha !== "function") {
    throw new TypeError("EdgeCache: options.redis must be a Redis client with evalsha and eval");
  }
  const keys = keySpace(options.prefix ?? "ec");
  const shards = options.telemetry?.shards;
  if (shards !== undefined && !(Number.isSafeInteger(shards) && shards >= 1 && shards <= 1024)) {
    throw new RangeError(`telemetry.shards must be a whole number 1..1024, got ${shards}`);
  }
  const telemetry = options.telemetry;
  const flush: FlushPolicy =
    telemetry === undefined
      ? DEFAULT_FLUSH
      : {
          shards: telemetry.shards ?? DEFAULT_SHARDS,
          flushIntervalMs: telemetry.flushIntervalMs ?? DEFAULT_FLUSH.flushIntervalMs,
          maxBatch: telemetry.maxBatch ?? DEFAULT_FLUSH.maxBatch,
        };
  const ctx = new EngineContext({
    redis: options.redis,
    keys,
    pending: options.telemetry?.isolate ?? telemetryFor(keys.prefix, flush.shards),
    flights: options.flights ?? isolateFlights,
    known: options.known ?? isolateKnown,
    l1:
      options.l1 instanceof L1Cache
        ? options.l1
        : options.l1
          ? new L1Cache(options.l1.maxEntries ?? 1000, options.l1.ttlMs ?? 1000)
          : undefined,
    random: options.random ?? Math.random,
    hot:
      options.hotKeys === undefined
        ? DEFAULT_HOT
        : {
            sampleRate: options.hotKeys.sampleRate ?? DEFAULT_HOT.sampleRate,
            windowMs: options.hotKeys.windowMs ?? DEFAULT_HOT.windowMs,
            windows: options.hotKeys.windows ?? DEFAULT_HOT.windows,
            decay: options.hotKeys.decay ?? DEFAULT_HOT.decay,
          },
    onError: options.onError ?? warnOfError,
  });
  return {
    ctx,
    defaults: options.defaults ?? NO_DEFAULTS,
    coalesce: options.coalesce ?? true,
    flush,
  };
}

// Shared by every engine built without the option (engines are built per request); frozen, as
// nothing may change them.
const DEFAULT_FLUSH: FlushPolicy = Object.freeze({
  shards: DEFAULT_SHARDS,
  flushIntervalMs: 1000,
  maxBatch: 256,
});
const DEFAULT_HOT = Object.freeze({ sampleRate: 0.1, windowMs: 60_000, windows: 5, decay: 0.5 });
const NO_DEFAULTS: EntryOptions<unknown> = Object.freeze({});

function warnOfError(error: unknown, operation: string): void {
  console.warn(`edgecache ${operation}:`, error);
}
