import { LoaderBackoffError, withBackoff } from "./backoff";
import type { EngineContext } from "./context";
import { withLoadTimeout } from "./deadline";
import { inspectEntry, readFreshness } from "./inspect";
import {
  advanceVersion,
  applyChange,
  bumpTags,
  purgeStep,
  type Target,
  unlinkKeys,
} from "./invalidate";
import { assertGlob, type KeySpace, keySpace } from "./keys";
import { assertVersion, cacheable, type Resolved, resolveOptions } from "./options";
import { coalesce } from "./read/coalesce";
import { flightId } from "./read/flights";
import { countLook, isOutOfMemory, noteWriteRefused, readEntry } from "./read/look";
import { ReadPlan, readThrough } from "./read/path";
import { fromEntry, type ReadReply } from "./read/reply";
import { type EdgeCacheOptions, engineSetup, type FlushPolicy } from "./setup";
import { flushTelemetry, readHotKeys, readStats, takeOrphans } from "./telemetry";
import type {
  CacheResult,
  EntryOptions,
  HotKey,
  Inspection,
  PurgeStep,
  StatsSnapshot,
  WriteRefusal,
  WriteResult,
} from "./types";
import { CacheWriteError } from "./write/error";
import { type FillReply, snapshotTags } from "./write/fill";
import { prepareEntry, store } from "./write/store";

/** `apply`'s `keys` or `tags`: absent (undefined or null) or an array; anything else throws. */
function listOf(list: unknown, what: string): readonly string[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    throw new TypeError(`apply: ${what} must be an array of names, got ${typeof list}`);
  }
  return list;
}

/** `apply`'s `versions`: absent (undefined or null) or a plain object of name → version. */
function recordOf(record: unknown, what: string): Readonly<Record<string, number>> {
  if (record === undefined || record === null) return {};
  const proto = typeof record === "object" ? Object.getPrototypeOf(record) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    const got = Array.isArray(record) ? "an array" : typeof record;
    throw new TypeError(`apply: ${what} must be a plain object of name → version, got ${got}`);
  }
  return record as Readonly<Record<string, number>>;
}

/**
 * The cache engine: cache-aside with leases, write-through with version CAS, tag and version
 * invalidation, SWR, XFetch, fail-safe. A hit is one read-only request; every other operation
 * is one Redis request (a Lua script) too, a miss two plus the fill; see src/cache/README.md for the invariants and their race diagrams. Build one per request
 * (cheap, no I/O); share an `L1Cache` across requests if you use one.
 *
 * @example
 * ```ts
 * import { Redis } from "@upstash/redis/cloudflare";
 * import { EdgeCache } from "edgecache/cache";
 *
 * export default {
 *   async fetch(request: Request, env: Env, ctx: ExecutionContext) {
 *     // Bounded: one retry and a 1 s deadline per command (the engine has no deadline of its
 *     // own), so Redis down means BYPASS within about a second, not seconds of retries.
 *     const redis = Redis.fromEnv(env, {
 *       retry: { retries: 1, backoff: () => 25 },
 *       signal: () => AbortSignal.timeout(1_000),
 *       enableAutoPipelining: false,
 *       responseEncoding: false,
 *     });
 *     const cache = new EdgeCache({ redis, prefix: "shop" });
 *     const { value, status } = await cache.getOrLoad("product:42", () => loadProduct(env, 42), {
 *       ttl: 60_000,
 *       tags: ["products"],
 *       waitUntil: ctx.waitUntil.bind(ctx),
 *     });
 *     return Response.json(value, { headers: { "X-Cache": status } });
 *   },
 * };
 * ```
 */
export class EdgeCache {
  readonly keys: KeySpace;
  readonly #defaults: EntryOptions<unknown>;
  readonly #coalesce: boolean;
  readonly #telemetry: FlushPolicy;
  /** The parts every read and write module works with (context.ts). */
  readonly #ctx: EngineContext;

  /** Builds the engine (no I/O). Throws a TypeError when `options.redis` has no `evalsha`. */
  constructor(options: EdgeCacheOptions) {
    const setup = engineSetup(options);
    this.#ctx = setup.ctx;
    this.keys = setup.ctx.keys;
    this.#defaults = setup.defaults;
    this.#coalesce = setup.coalesce;
    this.#telemetry = setup.flush;
  }

  // ---------------------------------------------------------------- reads

  /**
   * Cache-aside read. A fresh hit costs one read-only request (`hit.lua`, replica-servable with
   * `consistency: "replica"`); a miss costs the writing `acquire.lua` (which takes the lease),
   * the loader, and one fill (in `waitUntil` when given). A key this isolate has no fresh record
   * of goes straight to `acquire.lua` in strict mode (it serves a hit too). Never throws for a
   * cache fault: with Redis down the loader's value comes back as BYPASS. Loader errors
   * propagate unless a fail-safe entry exists. A loaded value whose fill cannot be built (a
   * value JSON.stringify refuses, `tagsOf`/`versionOf`/`cacheIf` throwing or answering no
   * valid tag or version) is still answered as MISS (its `version` null unless `versionOf`
   * gave one), not cached, reported to `onError` as "fill input", and its lease released at
   * once. Every value returned is the caller's own: L1 and coalescing hand out copies.
   *
   * @example
   * ```ts
   * const result = await cache.getOrLoad(`product:${id}`, () => loadProduct(id), {
   *   ttl: 60_000,                        // fresh for 60 s (± 10 % jitter)
   *   staleTtl: 300_000,                  // then served STALE while one caller refreshes
   *   tags: ["products"],                 // invalidateTags("products") drops it
   *   versionKey: `product:${id}`,        // bumpVersion / apply({versions}) drop older ones
   *   versionOf: (p) => p?.version ?? 0,
   *   waitUntil: ctx.waitUntil.bind(ctx), // the fill runs after the response
   * });
   * result.status; // "HIT" | "STALE" | "MISS" | "BYPASS"
   * ```
   */
  async getOrLoad<T>(
    key: string,
    load: (signal?: AbortSignal) => Promise<T>,
    options: EntryOptions<T> = {},
  ): Promise<CacheResult<T>> {
    const opts = resolveOptions(key, this.#defaults, options);
    if (opts.versionKey && !opts.versionOf) {
      throw new TypeError(
        `cache key ${key}: versionKey needs versionOf to read the loaded version`,
      );
    }
    this.#ctx.pending.add("reads");
    // A timed-out load is a failed one, for the backoff too (so the deadline goes inside it).
    let loader = opts.loadTimeout ? withLoadTimeout(key, load, opts.loadTimeout) : load;
    if (opts.loaderBackoff && opts.loaderBackoff > 0) {
      loader = this.#backedOff(key, loader, opts.loaderBackoff);
    }
    try {
      return await this.#read(key, loader, opts);
    } finally {
      // A flush that is due goes out after the read, not beside it: it would otherwise compete
      // with the read's own request (measured: ~1 ms more on the read that started it).
      this.#flushIfDue(opts.waitUntil);
    }
  }

  /** getOrLoad's read: L1, then the isolate's flight for the key, or the read path alone. */
  #read<T>(key: string, loader: () => Promise<T>, opts: Resolved<T>): Promise<CacheResult<T>> {
    const local = this.#ctx.l1?.get(key);
    if (local) {
      this.#ctx.pending.add("l1_hits");
      return Promise.resolve({
        value: local.value as T,
        status: "HIT",
        version: local.version,
        ageMs: 0,
        ttlMs: 0,
        staleTtlMs: 0,
        l1: true,
      });
    }
    if (!this.#coalesce) return readThrough(this.#ctx, key, loader, opts);
    // ---- isolate-scope coalescing (src/cache/read/coalesce.ts)
    // Replica reads share a load only with requests at the same sync position: a request
    // that carries its own newer write must not take a value read before the replica had it.
    // Never with strict reads, even without a position: a replica's lagging answer would reach
    // a strict reader that began after a write the replica has not applied yet.
    const id = flightId(
      this.keys.prefix,
      key,
      opts.versionKey,
      opts.replica ? `r:${this.#ctx.syncPosition}` : "",
      opts.tagList, // what vouches for a follower tests the leader's tags (flightId)
    );
    return coalesce(new ReadPlan(this.#ctx.flights, id, this.#ctx, key, loader, opts));
  }

  /**
   * Reads without loading or taking a lease: the cached value (HIT or STALE) or null. One
   * read-only request (two when the entry has tags this isolate did not know). A Redis fault
   * reads as null (and is counted), like any cache miss.
   *
   * @example
   * ```ts
   * const cached = await cache.get<Product>(`product:${id}`, { versionKey: `product:${id}` });
   * if (cached) console.log(cached.status, cached.ageMs); // no loader ran, no lease taken
   * ```
   */
  async get<T>(
    key: string,
    options: Pick<EntryOptions<T>, "versionKey" | "consistency"> = {},
  ): Promise<CacheResult<T> | null> {
    const opts = resolveOptions(key, this.#defaults, { ...options, tags: [] });
    this.#ctx.pending.add("reads");
    let reply: ReadReply | undefined;
    try {
      reply = await readEntry(this.#ctx, key, opts);
    } catch (error) {
      this.#ctx.fault(error, "get");
    } finally {
      this.#flushIfDue(this.#defaults.waitUntil); // after the read, as in getOrLoad
    }
    if (!reply) return null;
    countLook(this.#ctx, key, reply, { sample: false, draw: 1 });
    if (reply.v === undefined || reply.s === "MISS") return null;
    return fromEntry<T>(reply, reply.s);
  }

  /** Starts a background flush of the isolate's telemetry when one is due (never awaited). */
  #flushIfDue(waitUntil: ((p: Promise<unknown>) => void) | undefined): void {
    const { flushIntervalMs, maxBatch } = this.#telemetry;
    if (!this.#ctx.pending.due(Date.now(), flushIntervalMs, maxBatch)) return;
    const opts = waitUntil ? { waitUntil } : {};
    this.#ctx.background(opts, this.flushStats(), "stats flush");
    // Other prefixes' telemetry dropped for room (telemetry/isolate.ts), under their own key
    // layout, with this engine's hot-key windows (their expiry only): at most two per flush.
    for (const [prefix, orphan] of takeOrphans(2)) {
      const flushing = flushTelemetry(this.#ctx.redis, keySpace(prefix), orphan, this.#ctx.hot);
      this.#ctx.background(opts, flushing, "stats flush");
    }
  }

  // ---------------------------------------------------------------- writes

  /**
   * Write-through: stores `value` as the entry for `key`, as version `version` when given
   * (guarded by `options.versionKey`, default `key`). Never replaces a newer version; revokes
   * any lease so a load that started earlier cannot land afterwards. Throws CacheWriteError
   * when Redis cannot be reached, so the caller can fall back to the outbox.
   *
   * @example
   * ```ts
   * const row = await db.updateUser(id, patch); // UPDATE … SET version = version + 1 RETURNING *
   * const { written, reason } = await cache.writeThrough(`user:${id}`, row, row.version, {
   *   ttl: 600_000,
   * });
   * // written: false, reason: "version" when a newer version is already cached
   * ```
   */
  async writeThrough<T>(
    key: string,
    value: T,
    version: number | null,
    options: EntryOptions<T> = {},
  ): Promise<WriteResult> {
    const opts = resolveOptions(key, this.#defaults, {
      ...options,
      versionKey: version === null ? options.versionKey : (options.versionKey ?? key),
    });
    if (value !== undefined && !cacheable(value, opts)) {
      // Not to be cached, as a load of it would not be (`cacheIf` refuses it, or a versioned
      // null without `negativeTtl`): the entry it replaces must not outlive the write either.
      // One request: the entry and its lease deleted, the version advanced. It used to be
      // stored anyway, for the full ttl.
      const versions = version !== null && opts.versionKey ? { [opts.versionKey]: version } : {};
      // A failure is this write-through's ("writeThrough"), as when the value is stored.
      await this.#apply({ keys: [key], versions }, "writeThrough");
      return { written: false, reason: "uncacheable" };
    }
    // Data current now takes the counters as they are; data loaded at `tagsAsOf` must not
    // predate a bump.
    const seen = opts.tagsAsOf === undefined ? "" : `@${Math.floor(opts.tagsAsOf)}`;
    // Caller bugs surface before any request, as TypeErrors (a missing or invalid version,
    // undefined, a value JSON.stringify refuses: a BigInt, a cycle, a function) or
    // InvalidKeyError (a tagsOf tag), never as CacheWriteError, which means "Redis failed: use
    // the outbox" and would queue a write that can never succeed.
    const entry = prepareEntry(
      key,
      value,
      version,
      opts,
      snapshotTags(value, opts, () => seen, seen),
    );
    try {
      const reply = await store(this.#ctx, key, entry);
      this.#ctx.l1?.delete(key);
      // A write-through holds no lease (token ""): it is refused for its version, its
      // tags or its expiry, never for a lease.
      return reply.ok ? { written: true } : { written: false, reason: refusalOf(reply.r) };
    } catch (error) {
      throw this.#writeFailure(error, "writeThrough");
    }
  }

  /**
   * Write-through without a version (or with `options.versionKey` + `versionOf`). Without a
   * version the write is unconditional: the last write to arrive wins.
   *
   * @example
   * ```ts
   * await cache.set("config:flags", { newCheckout: true }, { ttl: 30_000, tags: ["config"] });
   * ```
   */
  set<T>(key: string, value: T, options: EntryOptions<T> = {}): Promise<WriteResult> {
    const version = options.versionOf && value != null ? options.versionOf(value) : null;
    return this.writeThrough(key, value, version, options);
  }

  // ---------------------------------------------------------------- invalidation

  /**
   * Deletes entries and their leases (dropping fills in flight): one request for any number.
   * Returns how many entries existed. Throws CacheWriteError.
   *
   * @example
   * ```ts
   * const removed = await cache.invalidate("product:42", "product-slug:blue-mug");
   * ```
   */
  async invalidate(...keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const sent = unlinkKeys(this.#target, keys); // names checked before anything is sent
    return this.#invalidating(sent, "invalidate", () => {
      for (const k of keys) {
        this.#ctx.l1?.delete(k);
        this.#ctx.known.expire(this.keys.prefix, k);
      }
    });
  }

  /**
   * Applies one invalidation event in ONE request: deletes `keys` (and their leases), bumps
   * `tags`, advances `versions` ({"product:42": 7}). Safe to repeat (redelivery, outbox drain).
   * Throws CacheWriteError when Redis fails; before any request, a TypeError when `keys` or
   * `tags` is not an array or `versions` not a plain object (an event body decoded from JSON
   * is not type-checked), InvalidKeyError for a name that is not one.
   *
   * @example
   * ```ts
   * await cache.apply({
   *   keys: ["product:42"],
   *   tags: ["products", "category:3"],
   *   versions: { "product:42": 8 },
   * }); // { removed: 1, tagsBumped: 2, versionsAdvanced: 1 }
   * ```
   */
  async apply(change: {
    keys?: readonly string[] | undefined;
    tags?: readonly string[] | undefined;
    versions?: Readonly<Record<string, number>> | undefined;
  }): Promise<{ removed: number; tagsBumped: number; versionsAdvanced: number }> {
    return this.#apply(change, "apply");
  }

  /**
   * `apply` for `operation`: what a Redis failure is reported as (CacheWriteError, onError),
   * the caller's own method (a write-through refused as uncacheable goes through here).
   */
  async #apply(
    change: {
      keys?: readonly string[];
      tags?: readonly string[];
      versions?: Readonly<Record<string, number>>;
    },
    operation: string,
  ): Promise<{ removed: number; tagsBumped: number; versionsAdvanced: number }> {
    // Events arrive as decoded JSON, unchecked by the compiler: a string where a list belongs
    // was split into one-letter names (and the named key or tag left as it was).
    if (typeof change !== "object" || change === null || Array.isArray(change)) {
      throw new TypeError(
        `${operation} takes { keys?, tags?, versions? }, got ${Array.isArray(change) ? "an array" : String(change)}`,
      );
    }
    const keys = [...new Set(listOf(change.keys, "keys"))];
    const tags = [...new Set(listOf(change.tags, "tags"))];
    const versions = Object.entries(recordOf(change.versions, "versions"));
    for (const [name, version] of versions) assertVersion(version, `version of ${name}`);
    if (keys.length + tags.length + versions.length === 0) {
      return { removed: 0, tagsBumped: 0, versionsAdvanced: 0 };
    }
    const sent = applyChange(this.#target, keys, tags, versions);
    return this.#invalidating(sent, operation, () => {
      for (const k of keys) {
        this.#ctx.l1?.delete(k);
        this.#ctx.known.expire(this.keys.prefix, k);
      }
      this.#ctx.known.expireWhere(
        this.keys.prefix,
        tags,
        versions.map(([name]) => name),
      );
      this.#ctx.l1?.deleteTagged(tags);
      if (versions.length > 0) this.#ctx.l1?.clear();
    });
  }

  /**
   * Bumps tag counters: every entry computed under the old counters is invalid. One request,
   * whatever the number of entries (nothing is scanned). Returns the new counters.
   *
   * @example
   * ```ts
   * await cache.invalidateTags("category:3"); // every list and detail tagged category:3
   * ```
   */
  async invalidateTags(...tags: string[]): Promise<Record<string, string>> {
    if (tags.length === 0) return {};
    const sent = bumpTags(this.#target, tags);
    return this.#invalidating(sent, "invalidateTags", () => {
      this.#ctx.l1?.deleteTagged(tags);
      this.#ctx.known.expireWhere(this.keys.prefix, tags, []);
    });
  }

  /**
   * Records `version` as the newest committed version of `entity:id`. Entries and fills of
   * older versions become invalid; a late or duplicated event (lower version) changes nothing.
   *
   * @example
   * ```ts
   * const { previous, current } = await cache.bumpVersion("product", 42, row.version);
   * ```
   */
  async bumpVersion(
    entity: string,
    id: string | number,
    version: number,
  ): Promise<{ previous: number | null; current: number }> {
    assertVersion(version);
    // An id that is not one (undefined from an unchecked event) became the version key
    // `product:undefined`, and the real one was never advanced.
    if (typeof id === "number" ? !Number.isFinite(id) : typeof id !== "string" || id === "") {
      throw new TypeError(
        `bumpVersion ${entity}: id must be a string or a number, got ${String(id)}`,
      );
    }
    const sent = advanceVersion(this.#target, `${entity}:${id}`, version);
    return this.#invalidating(sent, "bumpVersion", () => {
      this.#ctx.l1?.clear();
      this.#ctx.known.expireWhere(this.keys.prefix, [], [`${entity}:${id}`]);
    });
  }

  /**
   * One bounded step of a pattern purge over logical keys (`product:*`): SCAN MATCH in pages of
   * `count` until `budget` keys were examined, UNLINK of matches. Call again with the returned
   * cursor until `done`. Never KEYS, never unbounded.
   *
   * @example
   * ```ts
   * let step = await cache.purgePattern("search:*");
   * while (!step.done) step = await cache.purgePattern("search:*", { cursor: step.cursor });
   * ```
   */
  async purgePattern(
    glob: string,
    options: { cursor?: string; budget?: number; count?: number } = {},
  ): Promise<PurgeStep> {
    assertGlob(glob);
    // Caller bugs, before any request (Redis refused them as a syntax error, a CacheWriteError).
    const { cursor } = options;
    if (cursor !== undefined && (typeof cursor !== "string" || !/^\d{1,20}$/.test(cursor))) {
      throw new TypeError(`purgePattern cursor must be one a step returned, got ${String(cursor)}`);
    }
    for (const [name, value] of [
      ["budget", options.budget],
      ["count", options.count],
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
        throw new RangeError(`purgePattern ${name} must be a whole number >= 1, got ${value}`);
      }
    }
    return this.#invalidating(purgeStep(this.#target, glob, options), "purgePattern", () => {
      this.#ctx.l1?.clear();
      this.#ctx.known.expirePrefix(this.keys.prefix);
    });
  }

  // ---------------------------------------------------------------- introspection

  /**
   * Everything Redis knows about one key (admin, tests): the raw entry, its state, the TTLs of
   * the entry and the lease, the current version and tag counters. One request.
   *
   * @example
   * ```ts
   * const info = await cache.inspect("product:42", "product:42");
   * info.state; // "fresh" | "stale" | "fail-safe" | "absent"
   * ```
   */
  inspect(key: string, versionKey?: string): Promise<Inspection> {
    const known = this.#ctx.known.tags(this.keys.prefix, key);
    return inspectEntry(this.#ctx.redis, this.keys, key, versionKey, known);
  }

  /**
   * Counters of all isolates (the stats shards summed in one read-only request) plus this
   * isolate's not yet flushed ones, with `hit_ratio`. One request, writes nothing.
   *
   * @example
   * ```ts
   * const { hits, misses, hit_ratio } = await cache.stats();
   * ```
   */
  stats(): Promise<StatsSnapshot> {
    return readStats(this.#ctx.redis, this.keys, this.#telemetry.shards, this.#ctx.pending);
  }

  /**
   * Sends this isolate's pending counters and hot-key samples now, in one request (otherwise
   * a read sends them in the background once `telemetry.flushIntervalMs` has passed). A lost
   * flush puts them back and throws.
   *
   * @example
   * ```ts
   * ctx.waitUntil(cache.flushStats()); // e.g. at the end of a cron run, which may read nothing
   * ```
   */
  async flushStats(): Promise<void> {
    await flushTelemetry(this.#ctx.redis, this.keys, this.#ctx.pending, this.#ctx.hot);
  }

  /**
   * Milliseconds each key stays fresh (negative once stale, null when absent), and Redis's
   * clock: the warmer's one request to find what needs reloading (pass `now` as `tagsAsOf`
   * to the write-throughs of what it reloads).
   *
   * @example
   * ```ts
   * const { now, fresh } = await cache.freshness(["product:1", "product:2"]);
   * for (const [key, ms] of fresh) {
   *   if (ms === null || ms < 30_000) await cache.set(key, await reload(key), { tagsAsOf: now });
   * }
   * ```
   */
  async freshness(
    keys: readonly string[],
  ): Promise<{ now: number; fresh: Map<string, number | null> }> {
    if (!Array.isArray(keys)) {
      throw new TypeError(`freshness takes an array of keys, got ${typeof keys}`);
    }
    return readFreshness(this.#ctx.redis, this.keys, keys);
  }

  /**
   * Top `n` keys by decayed sampled frequency (for the warmer): every shard of the kept windows
   * merged in one read-only request, plus this isolate's unflushed samples.
   *
   * @example
   * ```ts
   * const hot = await cache.hotKeys(20); // [{ key: "product:42", score: 37.5 }, …]
   * ```
   */
  hotKeys(n = 50): Promise<HotKey[]> {
    if (!(Number.isSafeInteger(n) && n >= 0)) {
      return Promise.reject(new RangeError(`hotKeys(n): n must be a whole number >= 0, got ${n}`));
    }
    if (n === 0) return Promise.resolve([]);
    return readHotKeys(
      this.#ctx.redis,
      this.keys,
      this.#telemetry.shards,
      this.#ctx.pending,
      this.#ctx.hot,
      n,
    );
  }

  /** Where the invalidation requests go (invalidate.ts). */
  get #target(): Target {
    return { redis: this.#ctx.redis, keys: this.keys, statsKey: this.#ctx.statsKey };
  }

  // ---------------------------------------------------------------- helpers

  /**
   * An invalidation's request `sent`, with `drop` (forgetting what the isolate holds of its
   * names: L1 entries, known freshness) run twice: now, so the isolate stops serving them at
   * once, and again once the request settled. A read sent between the two can run in Redis
   * BEFORE the invalidation and store the old value in L1 after the first drop; it would then
   * be served from L1 to reads that began after the acknowledgement, for up to L1's ttl (found
   * by a race audit, test/node/cache/l1.test.ts). The second drop also moves L1's generation,
   * so a reply still on its way afterwards is refused (L1Cache.set's `since`). A Redis failure
   * becomes CacheWriteError for `operation`.
   */
  async #invalidating<R>(sent: Promise<R>, operation: string, drop: () => void): Promise<R> {
    drop();
    try {
      return await sent;
    } catch (error) {
      throw this.#writeFailure(error, operation);
    } finally {
      drop();
    }
  }

  /** `loader` under the per-isolate failure backoff (backoff.ts), counting skipped loads. */
  #backedOff<T>(key: string, loader: () => Promise<T>, ms: number): () => Promise<T> {
    const guarded = withBackoff(this.keys.prefix, key, loader, ms);
    return async () => {
      try {
        return await guarded();
      } catch (error) {
        if (error instanceof LoaderBackoffError) this.#ctx.pending.add("backoff_skips");
        throw error;
      }
    };
  }

  /**
   * Waits for background refreshes started without `waitUntil` (tests, Node).
   *
   * @example
   * ```ts
   * await cache.getOrLoad("k", load); // may start a background refresh
   * await cache.settle();             // …which has finished now
   * ```
   */
  async settle(): Promise<void> {
    await this.#ctx.settle();
  }

  #writeFailure(error: unknown, operation: string): CacheWriteError {
    this.#ctx.pending.add("redis_errors");
    // Redis full: what this write was to replace may still be served (look.ts).
    if (isOutOfMemory(error)) noteWriteRefused(this.keys.prefix);
    return new CacheWriteError(operation, error);
  }
}

/**
 * Why fill.lua refused a write-through. It holds no lease (token ""), so the script never says
 * "lease", and it always says why on a refusal: anything else reads as the version's.
 */
function refusalOf(r: FillReply["r"]): WriteRefusal {
  return r === "tag" || r === "expired" ? r : "version";
}
