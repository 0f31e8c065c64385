import { BoundedMap } from "./bounded-map";
import { privateCopy } from "./copy";

/**
 * Optional per-isolate LRU in front of Redis. Another isolate's invalidation cannot reach it,
 * so every entry lives at most `ttlMs` (bounded staleness, default 1 s), and never past its own
 * freshness: use it for keys so hot that even one Redis request per read is too many, and only
 * where that window is acceptable. This isolate's own writes and invalidations reach it at once.
 *
 * Values are copied in and out (`privateCopy`): L1 is shared by every request of the isolate,
 * and a request that mutates the value it was handed must not change what the next one reads.
 */
interface L1Entry {
  value: unknown;
  version: number | null;
  storedAt: number;
  /** Served until then (L1's clock): `ttlMs` after storing, or sooner when the entry's own freshness ends. */
  until: number;
  tags: readonly string[];
}

/** What `L1Cache.set` may also be told about the value it stores. */
export interface L1SetOptions {
  /** ms the value stays fresh where it came from (its `ttlMs`): L1 never serves it longer. */
  forMs?: number;
  /**
   * `generation` read before the value was read from Redis: when anything was deleted from L1
   * since (a write or invalidation of this isolate), the value may predate it and is not stored.
   */
  since?: number;
}

/**
 * A bounded LRU of recently read values in this isolate, in front of Redis.
 *
 * @example
 * ```ts
 * // Module scope: outlives the per-request engines. One per prefix (keyed by logical key).
 * const l1 = new L1Cache(1000, 1000); // at most 1000 entries, each for at most 1 s
 *
 * export default {
 *   async fetch(request: Request, env: Env) {
 *     // redisOf: Redis.fromEnv with a retry limit and a deadline per command (EdgeCache example)
 *     const cache = new EdgeCache({ redis: redisOf(env), l1 });
 *     // …a HIT in the last second is answered from memory: 0 Redis requests
 *   },
 * };
 * ```
 */
export class L1Cache {
  readonly #entries: BoundedMap<string, L1Entry>;
  #generation = 0;

  /**
   * @param maxEntries least recently used entries beyond this are dropped
   * @param ttlMs the longest an entry is served (the staleness bound across isolates)
   * @param now the clock (tests pass a fake one)
   *
   * @example
   * ```ts
   * let t = 0;
   * const l1 = new L1Cache(2, 1000, () => t); // a test clock
   * ```
   */
  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    readonly now: () => number = Date.now,
  ) {
    this.#entries = new BoundedMap(maxEntries);
  }

  /**
   * The entry for `key` if it is younger than `ttlMs` (and marks it most recently used), with
   * a copy of its value of the caller's own (`privateCopy`): mutating it changes nothing here.
   *
   * @example
   * ```ts
   * l1.get("product:42")?.value; // undefined once the entry is older than ttlMs
   * ```
   */
  get(key: string): L1Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.now() >= entry.until) {
      this.#entries.delete(key);
      return undefined;
    }
    // Re-insert to mark as most recently used (Map keeps insertion order).
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return { ...entry, value: privateCopy(entry.value) };
  }

  /**
   * Stores a copy of a value (`privateCopy`: the caller may go on mutating its own) with its
   * version and tags, evicting the least recently used entry when full.
   * The engine calls it on HIT and MISS; call it yourself only for an L1 you use on its own.
   * Served for `ttlMs`, or `options.forMs` when shorter; not stored at all when L1 dropped
   * anything since `options.since` (see `generation`).
   *
   * @example
   * ```ts
   * const since = l1.generation;
   * const { value, version, ttlMs } = await readFromRedis("product:42");
   * l1.set("product:42", value, version, ["products", "category:3"], { forMs: ttlMs, since });
   * ```
   */
  set(
    key: string,
    value: unknown,
    version: number | null,
    tags: readonly string[],
    options: L1SetOptions = {},
  ): void {
    if (options.since !== undefined && options.since !== this.#generation) return;
    const storedAt = this.now();
    const forMs = Math.min(this.ttlMs, options.forMs ?? this.ttlMs);
    if (forMs <= 0) return;
    const copy = privateCopy(value);
    this.#entries.touch(key, { value: copy, version, storedAt, until: storedAt + forMs, tags });
  }

  /**
   * Moves on every `delete`, `deleteTagged` and `clear`. Read it before a Redis read and pass it
   * to `set` as `since`: a reply that was on its way while this isolate wrote or invalidated
   * cannot put the older value back (the write was acknowledged before the next read began).
   *
   * @example
   * ```ts
   * const since = l1.generation; // before the read is sent
   * ```
   */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Drops one key (the engine does on its writes and invalidations).
   *
   * @example
   * ```ts
   * l1.delete("product:42");
   * ```
   */
  delete(key: string): void {
    this.#generation++;
    this.#entries.delete(key);
  }

  /**
   * Drops every entry carrying any of `tags` (the engine does on `invalidateTags` and `apply`).
   *
   * @example
   * ```ts
   * l1.deleteTagged(["category:3"]);
   * ```
   */
  deleteTagged(tags: readonly string[]): void {
    this.#generation++;
    const wanted = new Set(tags);
    for (const [key, entry] of this.#entries) {
      if (entry.tags.some((t) => wanted.has(t))) this.#entries.delete(key);
    }
  }

  /**
   * Drops everything (the engine does on version bumps and pattern purges).
   *
   * @example
   * ```ts
   * l1.clear();
   * ```
   */
  clear(): void {
    this.#generation++;
    this.#entries.clear();
  }

  /**
   * How many entries are held, expired ones included until they are read or evicted.
   *
   * @example
   * ```ts
   * l1.size; // ≤ maxEntries
   * ```
   */
  get size(): number {
    return this.#entries.size;
  }
}
