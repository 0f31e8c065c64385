import { LoaderBackoffError, withBackoff } from "./backoff";
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
import { L1Cache } from "./l1";
import { cacheable, lateTags, type Resolved, resolveOptions } from "./options";
import { jitterTtl, shouldRefreshEarly } from "./policy";
import { acquire } from "./read/acquire";
import {
  coalesce,
  type Flight,
  type FlightRegistry,
  flightId,
  isolateFlights,
} from "./read/coalesce";
import { type ReadTarget, readHit } from "./read/hit";
import { declaredTags, isolateKnown, type KnownEntries } from "./read/known";
import { fromEntry, type ReadReply } from "./read/reply";
import { loadedResult } from "./read/result";
import { nextCheckDelay } from "./read/wait";
import type { ScriptClient } from "./redis";
import {
  DEFAULT_SHARDS,
  flushTelemetry,
  type IsolateTelemetry,
  readHotKeys,
  readStats,
  telemetryFor,
} from "./telemetry";
import type {
  CacheResult,
  EntryOptions,
  HotKey,
  Inspection,
  PurgeStep,
  StatsSnapshot,
  WriteResult,
} from "./types";
import { type FillReply, releaseLease, snapshotTags, storeEntry } from "./write/fill";

/**
 * What an engine is built from. Only `redis` is required.
 *
 * @example
 * ```ts
 * import { Redis } from "@upstash/redis/cloudflare";
 * const cache = new EdgeCache({
 *   redis: Redis.fromEnv(env),            // anything with evalsha + eval
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
  /** Called on every swallowed cache fault (Redis down, background refresh failure). */
  onError?: (error: unknown, operation: string) => void;
}

/**
 * A write or invalidation could not reach Redis: fall back to the outbox / queue.
 * `operation` names the call, `cause` is the Redis client's error.
 *
 * @example
 * ```ts
 * try {
 *   await cache.apply({ keys: [`product:${id}`], versions: { [`product:${id}`]: version } });
 * } catch (error) {
 *   if (!(error instanceof CacheWriteError)) throw error;
 *   await queue.send({ keys: [`product:${id}`] }); // apply it later
 * }
 * ```
 */
export class CacheWriteError extends Error {
  constructor(
    readonly operation: string,
    override readonly cause: unknown,
  ) {
    super(`cache ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "CacheWriteError";
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function newToken(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
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
 *     const cache = new EdgeCache({ redis: Redis.fromEnv(env), prefix: "shop" });
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
  readonly #redis: ScriptClient;
  readonly #defaults: EntryOptions<unknown>;
  readonly #random: () => number;
  readonly #l1: L1Cache | undefined;
  readonly #hot: { sampleRate: number; windowMs: number; windows: number; decay: number };
  readonly #coalesce: boolean;
  readonly #onError: (error: unknown, operation: string) => void;
  /** Counters and hot-key samples of this isolate (module scope, see telemetry/isolate.ts). */
  readonly #pending: IsolateTelemetry;
  readonly #telemetry: { shards: number; flushIntervalMs: number; maxBatch: number };
  readonly #flights: FlightRegistry;
  /** What the isolate learned of entries: tags to declare, miss prediction (read/known.ts). */
  readonly #known: KnownEntries;

  constructor(options: EdgeCacheOptions) {
    this.#redis = options.redis;
    this.keys = keySpace(options.prefix ?? "ec");
    this.#telemetry = {
      shards: options.telemetry?.shards ?? DEFAULT_SHARDS,
      flushIntervalMs: options.telemetry?.flushIntervalMs ?? 1000,
      maxBatch: options.telemetry?.maxBatch ?? 256,
    };
    this.#pending =
      options.telemetry?.isolate ?? telemetryFor(this.keys.prefix, this.#telemetry.shards);
    this.#defaults = options.defaults ?? {};
    this.#random = options.random ?? Math.random;
    this.#l1 =
      options.l1 instanceof L1Cache
        ? options.l1
        : options.l1
          ? new L1Cache(options.l1.maxEntries ?? 1000, options.l1.ttlMs ?? 1000)
          : undefined;
    this.#hot = {
      sampleRate: options.hotKeys?.sampleRate ?? 0.1,
      windowMs: options.hotKeys?.windowMs ?? 60_000,
      windows: options.hotKeys?.windows ?? 5,
      decay: options.hotKeys?.decay ?? 0.5,
    };
    this.#coalesce = options.coalesce ?? true;
    this.#flights = options.flights ?? isolateFlights;
    this.#known = options.known ?? isolateKnown;
    this.#onError = options.onError ?? ((error, op) => console.warn(`edgecache ${op}:`, error));
  }

  // ---------------------------------------------------------------- reads

  /**
   * Cache-aside read. A fresh hit costs one read-only request (`hit.lua`, replica-servable with
   * `consistency: "replica"`); a miss costs the writing `acquire.lua` (which takes the lease),
   * the loader, and one fill (in `waitUntil` when given). A key this isolate has no fresh record
   * of goes straight to `acquire.lua` in strict mode (it serves a hit too). Never throws for a
   * cache fault: with Redis down the loader's value comes back as BYPASS. Loader errors
   * propagate unless a fail-safe entry exists.
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
    loader: () => Promise<T>,
    options: EntryOptions<T> = {},
  ): Promise<CacheResult<T>> {
    const opts = resolveOptions(key, this.#defaults, options);
    if (opts.versionKey && !opts.versionOf) {
      throw new TypeError(
        `cache key ${key}: versionKey needs versionOf to read the loaded version`,
      );
    }
    this.#pending.add("reads");
    this.#flushIfDue(opts.waitUntil);
    if (opts.loaderBackoff && opts.loaderBackoff > 0) {
      loader = this.#backedOff(key, loader, opts.loaderBackoff);
    }
    const local = this.#l1?.get(key);
    if (local) {
      this.#pending.add("l1_hits");
      return {
        value: local.value as T,
        status: "HIT",
        version: local.version,
        ageMs: 0,
        ttlMs: 0,
        staleTtlMs: 0,
        l1: true,
      };
    }
    if (!this.#coalesce) return this.#getOrLoad(key, loader, opts);
    // ---- isolate-scope coalescing (src/cache/read/coalesce.ts)
    return coalesce<T>({
      registry: this.#flights,
      // Replica reads share a load only with requests at the same sync position: a request
      // that carries its own newer write must not take a value read before the replica had it.
      id: flightId(this.keys.prefix, key, opts.versionKey, opts.replica ? this.#syncPosition : ""),
      waitBudget: opts.waitBudget,
      leaseTtl: opts.leaseTtl,
      lead: (flight, budget) =>
        this.#getOrLoad(key, loader, { ...opts, waitBudget: budget }, flight),
      solo: (budget) => this.#getOrLoad(key, loader, { ...opts, waitBudget: budget }),
      giveUp: async (waitedMs) => {
        // Same as before: a follower whose budget ran out loads itself, without filling.
        this.#pending.add("lease_timeouts");
        const { value } = await this.#timed(loader);
        return { ...loadedResult(value, opts), waitedMs };
      },
      onFollow: () => this.#pending.add("coalesced"),
    });
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
    this.#pending.add("reads");
    this.#flushIfDue(this.#defaults.waitUntil);
    let reply: ReadReply;
    try {
      reply = await this.#hit(key, opts);
    } catch (error) {
      this.#fault(error, "get");
      return null;
    }
    this.#count(key, reply, { sample: false, draw: 1 });
    if (!reply.v || reply.s === "MISS") return null;
    return fromEntry<T>(reply, reply.s);
  }

  async #getOrLoad<T>(
    key: string,
    loader: () => Promise<T>,
    opts: Resolved<T>,
    /**
     * The isolate's flight this caller leads, if any: told how long the caller may still take,
     * and settled with what a Redis request sent after the followers joined vouches for.
     */
    flight?: Flight,
  ): Promise<CacheResult<T>> {
    const busyFor = (ms: number) => flight?.busyUntil(Date.now() + ms);
    const started = Date.now();
    let waited = false;
    let backoffs = 0;
    for (;;) {
      let look: { reply: ReadReply; seq: number | undefined };
      const sent = Date.now();
      busyFor(opts.leaseTtl); // a read, then possibly a load under a lease of this length
      // Drawn before the request, as every read always has (seeded tests rely on the sequence).
      const draw = this.#random();
      try {
        look = await this.#look(key, opts, waited, flight);
      } catch (error) {
        this.#fault(error, "read");
        this.#pending.add("bypass");
        return this.#bypass(loader, opts);
      }
      const { reply, seq } = look;
      this.#count(key, reply, { sample: !waited, draw, polling: waited });

      if (reply.s === "HIT") {
        const result = fromEntry<T>(reply, "HIT");
        this.#l1?.set(key, result.value, result.version, opts.tagList);
        if (
          result.value !== null && // a negative entry just expires: no early refresh
          reply.fu !== undefined &&
          shouldRefreshEarly(reply.now, reply.fu, reply.lt ?? 0, opts.beta, this.#random)
        ) {
          this.#background(opts, this.#refreshLater(key, loader, opts, true), "early refresh");
        }
        const hit = waited ? { ...result, waitedMs: Date.now() - started } : result;
        flight?.settle({ ok: true, result: hit, vouchedAt: seq });
        return hit;
      }

      if (reply.s === "STALE") {
        if (reply.tok) {
          this.#background(opts, this.#refresh(key, reply, loader, opts), "stale refresh");
        } else if ((reply.wait ?? 0) <= 0) {
          // The read-only look cannot take the lease: ask for it after the response.
          this.#background(opts, this.#refreshLater(key, loader, opts, false), "stale refresh");
        }
        const stale = fromEntry<T>(reply, "STALE");
        flight?.settle({ ok: true, result: stale, vouchedAt: seq });
        return stale;
      }

      if (reply.tok) return this.#loadAndFill(key, reply, loader, opts, started, flight);

      // Someone else holds the lease: sleep about the load time it announced, then look once
      // (src/cache/read/wait.ts); a look finding the lease gone takes it over (the holder
      // died). Until the value appears or the wait budget is spent.
      if (!waited) this.#pending.add("lease_waits");
      waited = true;
      const remaining = opts.waitBudget - (Date.now() - started);
      const next = nextCheckDelay(
        {
          eta: reply.eta,
          estimate: reply.est,
          leasePttl: reply.wait,
          rttMs: Date.now() - sent,
          backoffs,
        },
        this.#random,
      );
      if (next.backoff) backoffs++;
      if (remaining <= 0) {
        this.#pending.add("lease_timeouts");
        busyFor(opts.leaseTtl);
        let value: { value: T; ms: number };
        try {
          value = await this.#timed(loader, key);
        } catch (error) {
          // Same rule as the lease holder: an expired entry kept for fail-safe beats an error.
          if (reply.fs && reply.v !== undefined) {
            this.#pending.add("load_errors");
            this.#pending.add("fail_safe");
            return { ...fromEntry<T>(reply, "STALE"), failSafe: true };
          }
          throw error;
        }
        return { ...loadedResult(value.value, opts), waitedMs: Date.now() - started };
      }
      const delay = Math.min(next.delay, remaining);
      busyFor(delay + opts.leaseTtl);
      await sleep(delay);
    }
  }

  /**
   * One look at the entry (read/plan in src/cache/README.md): the read-only hit script first,
   * then, unless it served a value or someone else is loading, the writing acquire script. In
   * strict mode a key this isolate has no fresh record of is likely a miss: the look goes to
   * acquire directly, which serves a hit too. `seq` is the flight sequence taken before the
   * request that answered (what a HIT or STALE vouches with).
   */
  async #look<T>(
    key: string,
    opts: Resolved<T>,
    waited: boolean,
    flight: Flight | undefined,
  ): Promise<{ reply: ReadReply; seq: number | undefined }> {
    let seq = flight?.sending();
    if (!opts.replica && !waited && !this.#known.freshNow(this.keys.prefix, key)) {
      return { reply: await this.#acquire(key, opts, false), seq };
    }
    const hit = await this.#hit(key, opts);
    if (hit.s !== "MISS" || (hit.wait ?? 0) > 0) return { reply: hit, seq };
    seq = flight?.sending();
    return { reply: await this.#acquire(key, opts, false), seq };
  }

  /**
   * The read-only hit script, declaring the caller's tags and those this isolate learned the
   * entry has; when the entry has others (`need`), it learns them and asks once more. A second
   * `need` (the entry's tags changed in between) is a MISS: nothing unchecked is served.
   */
  async #hit(
    key: string,
    opts: Pick<Resolved<unknown>, "versionKey" | "tagList" | "replica">,
  ): Promise<ReadReply> {
    const prefix = this.keys.prefix;
    const ask = (learned: readonly string[]) => {
      this.#pending.add("read_requests");
      return readHit(this.#readTarget, key, {
        versionKey: opts.versionKey,
        tags: declaredTags(opts.tagList, learned),
        replica: opts.replica,
      });
    };
    let reply = await ask(this.#known.tags(prefix, key));
    if (reply.r === "need" && reply.need) {
      this.#pending.add("tag_retries");
      this.#known.learn(prefix, key, { tags: reply.need });
      reply = await ask(reply.need);
      if (reply.r === "need" && reply.need) this.#known.learn(prefix, key, { tags: reply.need });
    }
    this.#noteFreshness(key, reply, opts.versionKey);
    return reply;
  }

  /**
   * The writing acquire script: a new lease token, this isolate's load-time estimate, the tags
   * this isolate learned. An entry with tags it did not declare answers `need` without taking
   * anything: it learns them and asks once more (that second call takes the lease if the tags
   * changed yet again).
   */
  async #acquire<T>(key: string, opts: Resolved<T>, early: boolean): Promise<ReadReply> {
    const prefix = this.keys.prefix;
    const ask = (learned: readonly string[], lastTry: boolean) => {
      this.#pending.add("read_requests");
      return acquire(this.#readTarget, key, {
        versionKey: opts.versionKey,
        tags: opts.tagList,
        learned,
        token: newToken(),
        leaseTtl: opts.leaseTtl,
        early,
        // The load time a granted lease announces to waiters when the entry has none (wait.ts).
        estimateMs: this.#flights.estimateLoad(prefix, key) ?? 0,
        lastTry,
      });
    };
    let reply = await ask(this.#known.tags(prefix, key), false);
    if (reply.r === "need" && reply.need) {
      this.#pending.add("tag_retries");
      this.#known.learn(prefix, key, { tags: reply.need });
      reply = await ask(reply.need, true);
      if (reply.need) this.#known.learn(prefix, key, { tags: reply.need });
    }
    this.#noteFreshness(key, reply, opts.versionKey);
    return reply;
  }

  /** Remembers until when the entry is fresh (local clock), or that it is not. */
  #noteFreshness(key: string, reply: ReadReply, versionKey: string | undefined): void {
    this.#pending.observeRedisTime(reply.now);
    if (reply.s === "HIT" && reply.fu !== undefined) {
      const freshUntil = Date.now() + (reply.fu - reply.now);
      this.#known.learn(this.keys.prefix, key, { freshUntil, versionKey });
    } else {
      this.#known.expire(this.keys.prefix, key);
    }
  }

  /**
   * Counts one look in the isolate (no script writes stats): a waiter's looks count no miss
   * and are no sample; a peek (`get`) is never sampled.
   */
  #count(
    key: string,
    reply: ReadReply,
    look: { sample: boolean; draw: number; polling?: boolean },
  ): void {
    const t = this.#pending;
    if (reply.r === "version" || reply.r === "tag") t.add("invalidated_reads");
    if (reply.s === "HIT") t.add("hits");
    else if (reply.s === "STALE") t.add("stale_hits");
    else if (!look.polling) t.add("misses");
    const rate = this.#hot.sampleRate;
    if (look.sample && rate > 0 && look.draw < rate) {
      t.sample(key, 1 / rate, Math.floor(reply.now / this.#hot.windowMs));
    }
  }

  async #loadAndFill<T>(
    key: string,
    reply: ReadReply,
    loader: () => Promise<T>,
    opts: Resolved<T>,
    started: number,
    flight?: Flight,
  ): Promise<CacheResult<T>> {
    let loaded: { value: T; ms: number };
    try {
      loaded = await this.#timed(loader, key);
    } catch (error) {
      this.#pending.add("load_errors");
      await this.#afterResponse(opts, this.#release(key, reply.tok ?? ""), "lease release");
      if (reply.fs && reply.v !== undefined) {
        this.#pending.add("fail_safe");
        return { ...fromEntry<T>(reply, "STALE"), failSafe: true };
      }
      throw error;
    }
    if (!cacheable(loaded.value, opts)) {
      await this.#afterResponse(opts, this.#release(key, reply.tok ?? ""), "lease release");
      return loadedResult(loaded.value, opts);
    }
    const result = loadedResult(loaded.value, opts);
    // Into L1 before the fill: a refused fill then removes it again, whenever it completes.
    this.#l1?.set(key, result.value, result.version, [
      ...opts.tagList,
      ...lateTags(loaded.value, opts),
    ]);
    const waitedMs = Date.now() - started - loaded.ms;
    const answer = waitedMs > 50 ? { ...result, waitedMs } : result;
    // The fill's compare-and-set (lease, version, tags) vouches for the value to the followers
    // that joined before it was sent; a refused fill vouches for nothing (see Outcome).
    const fillSeq = flight?.sending();
    flight?.settleLater(opts.leaseTtl);
    const fill = this.#fill(key, reply, loaded.value, opts, loaded.ms).then(
      (accepted) => {
        flight?.settle({ ok: true, result, vouchedAt: accepted ? fillSeq : undefined });
      },
      (error: unknown) => {
        flight?.settle({ ok: true, result });
        throw error;
      },
    );
    await this.#afterResponse(opts, fill, "fill");
    return answer;
  }

  async #refresh<T>(
    key: string,
    reply: ReadReply,
    loader: () => Promise<T>,
    opts: Resolved<T>,
  ): Promise<void> {
    let loaded: { value: T; ms: number };
    try {
      loaded = await this.#timed(loader, key);
    } catch (error) {
      // The stale value keeps being served; the loader's error is not a cache fault.
      this.#pending.add("refresh_errors");
      this.#onError(error, "background refresh loader");
      return this.#release(key, reply.tok ?? "");
    }
    if (!cacheable(loaded.value, opts)) return this.#release(key, reply.tok ?? "");
    await this.#fill(key, reply, loaded.value, opts, loaded.ms);
  }

  /**
   * A refresh after the response, for an entry the read-only look served (early refresh, or
   * STALE): takes the lease with the acquire script, then loads and fills.
   */
  async #refreshLater<T>(
    key: string,
    loader: () => Promise<T>,
    opts: Resolved<T>,
    early: boolean,
  ): Promise<void> {
    this.#random(); // the draw every read request takes (seeded tests rely on the sequence)
    const reply = await this.#acquire(key, opts, early);
    if (!reply.tok) return; // another caller is already refreshing, or it was refilled
    if (early) this.#pending.add("early_refreshes");
    await this.#refresh(key, reply, loader, opts);
  }

  async #bypass<T>(loader: () => Promise<T>, opts: Resolved<T>): Promise<CacheResult<T>> {
    const { value } = await this.#timed(loader);
    return { ...loadedResult(value, opts), status: "BYPASS" };
  }

  /** Starts a background flush of the isolate's telemetry when one is due (never awaited). */
  #flushIfDue(waitUntil: ((p: Promise<unknown>) => void) | undefined): void {
    const { flushIntervalMs, maxBatch } = this.#telemetry;
    if (!this.#pending.due(Date.now(), flushIntervalMs, maxBatch)) return;
    this.#background(waitUntil ? { waitUntil } : {}, this.flushStats(), "stats flush");
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
    // Caller bugs surface as TypeErrors, not as CacheWriteError (which means "use the outbox").
    if (opts.versionKey && version === null) {
      throw new TypeError(`cache key ${key}: versionKey is set but no version was given`);
    }
    if (value === undefined) throw new TypeError(`cache key ${key}: cannot cache undefined`);
    // Data current now takes the counters as they are; data loaded at `tagsAsOf` must not
    // predate a bump.
    const seen = options.tagsAsOf === undefined ? "" : `@${Math.floor(options.tagsAsOf)}`;
    const tags = snapshotTags(value, opts, () => seen, seen);
    try {
      const reply = await this.#store(key, "", value, version, opts, tags, 0, "writes");
      this.#l1?.delete(key);
      return reply.ok ? { written: true } : { written: false, reason: reply.r ?? "refused" };
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
    const version = options.versionOf ? options.versionOf(value) : null;
    return this.writeThrough(key, value, version, options);
  }

  /** The fill of a granted lease: checked against the counters and version it captured. */
  async #fill<T>(
    key: string,
    read: ReadReply,
    value: T,
    opts: Resolved<T>,
    loadMs: number,
  ): Promise<boolean> {
    let version =
      opts.versionKey && opts.versionOf && value !== null ? opts.versionOf(value) : null;
    let entryOpts = opts;
    if (value === null && opts.negativeTtl && opts.negativeTtl > 0) {
      // A negative entry: short-lived, no grace or fail-safe, and under a version key stored as
      // the version Redis knew when the lease was granted, so the next advance (a create, an
      // outbox event) invalidates it; a create that landed during the load revoked the lease.
      entryOpts = { ...opts, ttl: opts.negativeTtl, staleTtl: 0, failSafeMs: 0 };
      if (opts.versionKey) version = read.cv ?? 0;
    }
    // Own tags check the counters the read captured; tags known only from the value (and any
    // counter not captured) check that nothing was bumped since the load began.
    const counters = Array.isArray(read.tg) ? read.tg : [];
    const bound = `@${Math.floor(read.now)}`;
    const tags = snapshotTags(value, opts, (i) => counters[i] ?? bound, bound);
    this.#pending.add("read_requests");
    const token = read.tok ?? "";
    const reply = await this.#store(key, token, value, version, entryOpts, tags, loadMs, "fills");
    return reply.ok;
  }

  /**
   * One `fill.lua` call; counts what it answered and tells the isolate's records (L1, known
   * entries) whether the entry is now there.
   */
  async #store<T>(
    key: string,
    token: string,
    value: T,
    version: number | null,
    opts: Resolved<T>,
    tags: ReadonlyArray<readonly [string, string]>,
    loadMs: number,
    counter: "fills" | "writes",
  ): Promise<FillReply> {
    if (opts.versionKey && version === null) {
      throw new TypeError(`cache key ${key}: versionKey is set but no version was given`);
    }
    if (value === undefined) throw new TypeError(`cache key ${key}: cannot cache undefined`);
    const freshMs = jitterTtl(opts.ttl, opts.jitter, this.#random);
    const sent = Date.now();
    const reply = await storeEntry(this.#readTarget, key, {
      token,
      json: JSON.stringify(value),
      version,
      versionKey: opts.versionKey,
      freshMs,
      graceMs: opts.staleTtl,
      expiresAtMs: opts.expiresAtMs,
      failSafeMs: opts.failSafeMs,
      tags,
      loadMs,
    });
    const prefix = this.keys.prefix;
    if (reply.ok) {
      this.#pending.add(counter);
      const names = tags.map(([name]) => name);
      const until = opts.expiresAtMs === undefined ? Infinity : opts.expiresAtMs;
      const freshUntil = Math.min(sent + freshMs, until);
      this.#known.learn(prefix, key, { tags: names, freshUntil, versionKey: opts.versionKey });
    } else {
      this.#pending.add(`dropped_${reply.r ?? "refused"}`);
      this.#l1?.delete(key);
      this.#known.expire(prefix, key);
    }
    return reply;
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
    for (const k of keys) {
      this.#l1?.delete(k);
      this.#known.expire(this.keys.prefix, k);
    }
    try {
      return await sent;
    } catch (error) {
      throw this.#writeFailure(error, "invalidate");
    }
  }

  /**
   * Applies one invalidation event in ONE request: deletes `keys` (and their leases), bumps
   * `tags`, advances `versions` ({"product:42": 7}). Safe to repeat (redelivery, outbox drain).
   * Throws CacheWriteError.
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
    keys?: readonly string[];
    tags?: readonly string[];
    versions?: Readonly<Record<string, number>>;
  }): Promise<{ removed: number; tagsBumped: number; versionsAdvanced: number }> {
    const keys = [...new Set(change.keys ?? [])];
    const tags = [...new Set(change.tags ?? [])];
    const versions = Object.entries(change.versions ?? {});
    if (keys.length + tags.length + versions.length === 0) {
      return { removed: 0, tagsBumped: 0, versionsAdvanced: 0 };
    }
    const sent = applyChange(this.#target, keys, tags, versions);
    for (const k of keys) {
      this.#l1?.delete(k);
      this.#known.expire(this.keys.prefix, k);
    }
    this.#known.expireWhere(
      this.keys.prefix,
      tags,
      versions.map(([name]) => name),
    );
    this.#l1?.deleteTagged(tags);
    if (versions.length > 0) this.#l1?.clear();
    try {
      return await sent;
    } catch (error) {
      throw this.#writeFailure(error, "apply");
    }
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
    this.#l1?.deleteTagged(tags);
    this.#known.expireWhere(this.keys.prefix, tags, []);
    try {
      return await sent;
    } catch (error) {
      throw this.#writeFailure(error, "invalidateTags");
    }
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
    const sent = advanceVersion(this.#target, `${entity}:${id}`, version);
    this.#l1?.clear();
    this.#known.expireWhere(this.keys.prefix, [], [`${entity}:${id}`]);
    try {
      return await sent;
    } catch (error) {
      throw this.#writeFailure(error, "bumpVersion");
    }
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
    this.#l1?.clear();
    this.#known.clear();
    try {
      return await purgeStep(this.#target, glob, options);
    } catch (error) {
      throw this.#writeFailure(error, "purgePattern");
    }
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
    const known = this.#known.tags(this.keys.prefix, key);
    return inspectEntry(this.#redis, this.keys, key, versionKey, known);
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
    return readStats(this.#redis, this.keys, this.#telemetry.shards, this.#pending);
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
    await flushTelemetry(this.#redis, this.keys, this.#pending, this.#hot);
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
  freshness(keys: readonly string[]): Promise<{ now: number; fresh: Map<string, number | null> }> {
    return readFreshness(this.#redis, this.keys, keys);
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
    return readHotKeys(this.#redis, this.keys, this.#telemetry.shards, this.#pending, this.#hot, n);
  }

  /** This isolate's stats shard: every writing script counts there, never in one hot key. */
  get #statsKey(): string {
    return this.keys.stats(this.#pending.shard);
  }

  /** Where the invalidation requests go (invalidate.ts). */
  get #target(): Target {
    return { redis: this.#redis, keys: this.keys, statsKey: this.#statsKey };
  }

  // ---------------------------------------------------------------- helpers

  /** `loader` under the per-isolate failure backoff (backoff.ts), counting skipped loads. */
  #backedOff<T>(key: string, loader: () => Promise<T>, ms: number): () => Promise<T> {
    const guarded = withBackoff(this.keys.prefix, key, loader, ms);
    return async () => {
      try {
        return await guarded();
      } catch (error) {
        if (error instanceof LoaderBackoffError) this.#pending.add("backoff_skips");
        throw error;
      }
    };
  }

  /** Runs a loader; with `key`, its time is remembered as the estimate the next lease announces. */
  async #timed<T>(loader: () => Promise<T>, key?: string): Promise<{ value: T; ms: number }> {
    const started = performance.now();
    this.#pending.add("loads");
    const value = await loader();
    const ms = performance.now() - started;
    if (key !== undefined) this.#flights.recordLoad(this.keys.prefix, key, ms);
    return { value, ms };
  }

  async #release(key: string, token: string): Promise<void> {
    if (!token) return;
    this.#pending.add("read_requests");
    await releaseLease(this.#readTarget, key, token);
  }

  /** Where reads and fills go. */
  get #readTarget(): ReadTarget {
    return { redis: this.#redis, keys: this.keys };
  }

  /**
   * The client's read-your-writes position (`@upstash/redis` keeps the `upstash-sync-token` of
   * its last reply per client), "" when it has none or is another client.
   */
  get #syncPosition(): string {
    const token = (this.#redis as { readYourWritesSyncToken?: unknown }).readYourWritesSyncToken;
    return typeof token === "string" ? token : "";
  }

  /** Background work (refreshes, lease releases): handed to waitUntil, or tracked for settle(). */
  #background(
    opts: { waitUntil?: (p: Promise<unknown>) => void },
    work: Promise<unknown>,
    operation: string,
  ): void {
    const guarded = work.catch((error: unknown) => this.#fault(error, operation));
    if (opts.waitUntil) {
      opts.waitUntil(guarded);
      return;
    }
    this.#unawaited.add(guarded);
    void guarded.finally(() => this.#unawaited.delete(guarded));
  }

  readonly #unawaited = new Set<Promise<unknown>>();

  /**
   * Work that must follow the response but not delay it: waitUntil on Workers; awaited
   * elsewhere, so that in Node a read after getOrLoad returns sees the fill.
   */
  async #afterResponse(
    opts: { waitUntil?: (p: Promise<unknown>) => void },
    work: Promise<unknown>,
    operation: string,
  ): Promise<void> {
    const guarded = work.catch((error: unknown) => this.#fault(error, operation));
    if (opts.waitUntil) opts.waitUntil(guarded);
    else await guarded;
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
    while (this.#unawaited.size > 0) await Promise.all([...this.#unawaited]);
  }

  #fault(error: unknown, operation: string): void {
    this.#pending.add("redis_errors");
    this.#onError(error, operation);
  }

  #writeFailure(error: unknown, operation: string): CacheWriteError {
    this.#pending.add("redis_errors");
    return new CacheWriteError(operation, error);
  }
}
