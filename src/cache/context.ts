import type { KeySpace } from "./keys";
import type { L1Cache } from "./l1";
import type { FlightRegistry } from "./read/flights";
import type { ReadTarget } from "./read/hit";
import type { KnownEntries } from "./read/known";
import type { ScriptClient } from "./redis";
import type { IsolateTelemetry } from "./telemetry";

/** Where background work goes: Workers' `ctx.waitUntil`, or nothing (tracked for `settle`). */
export interface BackgroundOptions {
  waitUntil?: (promise: Promise<unknown>) => void;
}

/** What an engine is made of, resolved from `EdgeCacheOptions` (engine.ts). */
export interface EngineParts {
  redis: ScriptClient;
  keys: KeySpace;
  pending: IsolateTelemetry;
  flights: FlightRegistry;
  known: KnownEntries;
  l1: L1Cache | undefined;
  random: () => number;
  hot: { sampleRate: number; windowMs: number; windows: number; decay: number };
  onError: (error: unknown, operation: string) => void;
}

/**
 * One engine's parts and the chores every path shares (timing loads, background work, faults),
 * handed to the read and write modules (read/path.ts, read/look.ts, read/load.ts,
 * write/store.ts) so that none of them depends on the `EdgeCache` class. One per engine, so
 * one per request on the Worker: it holds no I/O of its own, only the request's client.
 *
 * @example
 *   const ctx = new EngineContext({ redis, keys: keySpace("ec"), pending, flights, known,
 *     l1: undefined, random: Math.random, hot, onError: console.warn });
 *   const { value, ms } = await ctx.timed(() => loadProduct(1), "product:1");
 */
export class EngineContext implements EngineParts {
  readonly redis: ScriptClient;
  readonly keys: KeySpace;
  /** Counters and hot-key samples of this isolate (module scope, see telemetry/isolate.ts). */
  readonly pending: IsolateTelemetry;
  readonly flights: FlightRegistry;
  /** What the isolate learned of entries: tags to declare, miss prediction (read/known.ts). */
  readonly known: KnownEntries;
  readonly l1: L1Cache | undefined;
  readonly random: () => number;
  readonly hot: { sampleRate: number; windowMs: number; windows: number; decay: number };
  readonly onError: (error: unknown, operation: string) => void;
  /** Background work without `waitUntil`, until it ends: made at the first (settle). */
  #unawaited: Set<Promise<unknown>> | undefined;

  constructor(parts: EngineParts) {
    this.redis = parts.redis;
    this.keys = parts.keys;
    this.pending = parts.pending;
    this.flights = parts.flights;
    this.known = parts.known;
    this.l1 = parts.l1;
    this.random = parts.random;
    this.hot = parts.hot;
    this.onError = parts.onError;
  }

  /**
   * Where reads and fills go: the context itself (it has the client and the key layout), so an
   * engine built per request allocates no second object for it.
   */
  get target(): ReadTarget {
    return this;
  }

  /** This isolate's stats shard: every writing script counts there, never in one hot key. */
  get statsKey(): string {
    return this.keys.stats(this.pending.shard);
  }

  /**
   * The client's read-your-writes position (`@upstash/redis` keeps the `upstash-sync-token` of
   * its last reply per client), "" when it has none or is another client.
   */
  get syncPosition(): string {
    const token = this.redis.readYourWritesSyncToken;
    return typeof token === "string" ? token : "";
  }

  /** Runs a loader; with `key`, its time is remembered as the estimate the next lease announces. */
  async timed<T>(loader: () => Promise<T>, key?: string): Promise<{ value: T; ms: number }> {
    const started = performance.now();
    this.pending.add("loads");
    const value = await loader();
    const ms = performance.now() - started;
    if (key !== undefined) this.flights.recordLoad(this.keys.prefix, key, ms);
    return { value, ms };
  }

  /** Background work (refreshes, lease releases): handed to waitUntil, or tracked for settle(). */
  background(opts: BackgroundOptions, work: Promise<unknown>, operation: string): void {
    const guarded = work.catch((error: unknown) => this.fault(error, operation));
    if (opts.waitUntil) {
      opts.waitUntil(guarded);
      return;
    }
    if (this.#unawaited === undefined) this.#unawaited = new Set();
    const unawaited = this.#unawaited;
    unawaited.add(guarded);
    void guarded.finally(() => unawaited.delete(guarded));
  }

  /**
   * Work that must follow the response but not delay it: waitUntil on Workers; awaited
   * elsewhere, so that in Node a read after getOrLoad returns sees the fill.
   */
  async afterResponse(
    opts: BackgroundOptions,
    work: Promise<unknown>,
    operation: string,
  ): Promise<void> {
    const guarded = work.catch((error: unknown) => this.fault(error, operation));
    if (opts.waitUntil) opts.waitUntil(guarded);
    else await guarded;
  }

  /** Waits for background work started without `waitUntil`, including work it started. */
  async settle(): Promise<void> {
    const unawaited = this.#unawaited;
    while (unawaited && unawaited.size > 0) await Promise.all([...unawaited]);
  }

  /** A swallowed cache fault: counted and reported. */
  fault(error: unknown, operation: string): void {
    this.pending.add("redis_errors");
    this.report(error, operation);
  }

  /**
   * Hands `error` to the `onError` hook, whatever the hook does: it is a reporting hook, so a
   * hook that throws (a logger failing on a circular error, Sentry not initialised) must not
   * turn a swallowed fault into a failed request, or into an unhandled rejection of
   * background work. What it throws is dropped.
   */
  report(error: unknown, operation: string): void {
    try {
      this.onError(error, operation);
    } catch {
      // Nowhere left to report it: the hook itself is what failed.
    }
  }
}
