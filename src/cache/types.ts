/** Where a value came from: Redis fresh, Redis in its grace window, the loader, or the loader
 * because Redis could not be asked. */
export type CacheStatus = "HIT" | "STALE" | "MISS" | "BYPASS";

export interface EntryOptions<T> {
  /** Fresh lifetime in ms (before jitter). Default 60 s. */
  ttl?: number;
  /** Grace window in ms after `ttl` during which the old value is served (STALE) while one
   * caller refreshes it in the background. Default 0. */
  staleTtl?: number;
  /** Absolute end of life (epoch ms or Date): neither fresh nor stale past it. */
  expiresAt?: number | Date;
  /** Group names; `invalidateTags` of any of them invalidates the entry in O(1). */
  tags?: readonly string[];
  /**
   * Tags that depend on the loaded value (e.g. a product's `category:{id}`). They cannot be
   * captured before the load, so the fill is checked against the load's start time instead:
   * a bump after the load began drops the fill.
   */
  tagsOf?: (value: T) => readonly string[];
  /**
   * For writeThrough/set of data loaded earlier (the warmer): the Redis time (ms) the load
   * began. Tags bumped after it make the write refuse, as for a fill.
   */
  tagsAsOf?: number;
  /** Name of the version key guarding this entry (e.g. "product:42"). With it, an entry or a
   * fill older than the newest version Redis knows is never served or written. */
  versionKey?: string;
  /** Reads the version out of a loaded value (e.g. `(row) => row.version`). Required with
   * `versionKey` in `getOrLoad`. */
  versionOf?: (value: NonNullable<T>) => number;
  /** TTL jitter as a fraction: 0.1 spreads `ttl` over ±10 %. Default 0.1. */
  jitter?: number;
  /** Probabilistic early refresh (XFetch); `false` turns it off. Default β = 1. */
  earlyRefresh?: boolean | { beta: number };
  /** Runs fills and background refreshes off the response path (Workers: ctx.waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Lease lifetime in ms: how long a crashed loader can hold others back. Default 2 s. */
  leaseTtl?: number;
  /** How long a caller waits for another caller's load before loading itself. Default 2.5 s. */
  waitBudget?: number;
  /** Keep entries this long (ms) after their grace window, served only if the loader fails.
   * `true` = 1 hour. Default off. */
  failSafe?: boolean | number;
  /**
   * Negative caching: a loader returning `null` ("not found") is cached for this long (ms,
   * jittered; no grace, no fail-safe). Under a `versionKey` the null is stored as the version
   * the key had when the lease was granted (0 if never written), so any version advance (a
   * create, an outbox event) invalidates it at once. Default off: a versioned null is answered
   * but not cached, an unversioned null is cached with `ttl`.
   *
   * @example
   * cache.getOrLoad(`product:${id}`, () => loadProduct(id), {
   *   versionKey: `product:${id}`, versionOf: (p) => p?.version ?? 0, negativeTtl: 30_000,
   * });
   */
  negativeTtl?: number;
  /**
   * Whether a loaded value may be cached (default: every value but `undefined`). A value it
   * refuses is answered (MISS) and the lease released: e.g. a list page reached through a cursor
   * the server never issued, so arbitrary input cannot grow the key space.
   */
  cacheIf?: (value: T) => boolean;
  /**
   * After the loader throws for this key, callers within this many ms do not call it again:
   * they get a fail-safe value where one is kept, else the error at once (`LoaderBackoffError`,
   * the loader's error as `cause`). Per isolate, see `backoff.ts`. Default 0 (off).
   */
  loaderBackoff?: number;
  /**
   * ms a load may take: past it the loader's `signal` is aborted and the read goes on as if it
   * had thrown `LoadTimeoutError` (a fail-safe value where one is kept, else the error; the
   * lease released, `load_errors` counted). Default: none. Keep it under `leaseTtl` (default
   * 2 s): a leader still loading when its lease expires counts as gone, and its followers start
   * loads of their own.
   */
  loadTimeout?: number;
  /**
   * Where a hit is served on an Upstash Global database (src/cache/README.md, "Consistency").
   * `strict` (default): on the primary (a read-only, key-locked `EVALSHA`), so every
   * acknowledged write is seen. `replica`: an `EVALSHA_RO` the nearest read replica may serve;
   * other clients' writes show after at most the replication lag, and a client's own writes at
   * once when it carries its sync position (the client's `readYourWritesSyncToken`). On a
   * regional database both read the same server.
   */
  consistency?: "strict" | "replica";
}

export interface CacheResult<T> {
  value: T;
  status: CacheStatus;
  /** The entry's version, when it has one. */
  version: number | null;
  /** ms since the value was loaded (0 for a value that was just loaded). */
  ageMs: number;
  /** ms until the entry stops being fresh (0 when stale or not cached). */
  ttlMs: number;
  /** ms until the grace window ends (0 when not cached). */
  staleTtlMs: number;
  /** Served from the per-isolate L1 instead of Redis. */
  l1?: boolean;
  /** The loader failed and an expired entry was served instead. */
  failSafe?: boolean;
  /** The caller waited for another caller's lease (ms). */
  waitedMs?: number;
}

export interface WriteResult {
  /** false when the write was refused as older than what the cache knows. */
  written: boolean;
  /**
   * Why a write was refused: "version" (older than the newest version), "expired" (past
   * `expiresAt` already), "tag" (with `tagsAsOf`: a tag was bumped after the data was loaded),
   * "uncacheable" (`cacheIf` refused the value, or a versioned null without `negativeTtl`: the
   * old entry was deleted and the version advanced instead).
   */
  reason?: WriteRefusal;
}

/** Why a write-through was refused (see `WriteResult.reason`). */
export type WriteRefusal = "version" | "expired" | "tag" | "uncacheable";

export interface PurgeStep {
  /** Pass back to continue; "0" once the whole keyspace has been scanned. */
  cursor: string;
  done: boolean;
  deleted: number;
  /**
   * The SCAN work this step did, in COUNT steps (what `budget` is spent in): an upper bound on
   * the keys examined, not their number (SCAN's COUNT is a hint of buckets visited, which on a
   * small keyspace exceeds the keys there are).
   */
  scanned: number;
}

export interface Inspection {
  key: string;
  now: number;
  /** The raw entry, parsed; null when absent. */
  entry: {
    value: unknown;
    version: number | null;
    createdAt: number;
    /**
     * The fill's identity, unique per fill (null for an entry stored before fill ids): two
     * inspections with the same `fillId` saw the same fill, which `createdAt` (ms) cannot tell.
     */
    fillId: string | null;
    freshUntil: number;
    staleUntil: number;
    keepUntil: number;
    loadTimeMs: number;
    tags: Record<string, string>;
  } | null;
  state: "fresh" | "stale" | "fail-safe" | "absent";
  /** Remaining physical TTL in ms (-2 absent, -1 none). */
  pttl: number;
  /** Remaining lease TTL in ms (-2 when nobody is loading). */
  leasePttl: number;
  /** The newest version Redis knows for `versionKey`, when given. */
  version: number | null;
  /** Current counters of the entry's tags; an entry is valid while they equal its snapshot. */
  currentTags: Record<string, string | null>;
}

export type StatsSnapshot = Record<string, number> & {
  hits: number;
  stale_hits: number;
  misses: number;
  hit_ratio: number;
};

export interface HotKey {
  key: string;
  score: number;
}
