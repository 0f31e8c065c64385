import { BoundedMap } from "./bounded-map";

/**
 * Optional per-isolate LRU in front of Redis. Another isolate's invalidation cannot reach it,
 * so every entry lives at most `ttlMs` (bounded staleness, default 1 s): use it for keys so hot
 * that even one Redis request per read is too many, and only where that window is acceptable.
 */
interface L1Entry {
  value: unknown;
  version: number | null;
  storedAt: number;
  tags: readonly string[];
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
 *     const cache = new EdgeCache({ redis: Redis.fromEnv(env), l1 });
 *     // …a HIT in the last second is answered from memory: 0 Redis requests
 *   },
 * };
 * ```
 */
export class L1Cache {
  readonly #entries: BoundedMap<string, L1Entry>;

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
   * The entry for `key` if it is younger than `ttlMs` (and marks it most recently used).
   *
   * @example
   * ```ts
   * l1.get("product:42")?.value; // undefined once the entry is older than ttlMs
   * ```
   */
  get(key: string): L1Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.now() - entry.storedAt >= this.ttlMs) {
      this.#entries.delete(key);
      return undefined;
    }
    // Re-insert to mark as most recently used (Map keeps insertion order).
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /**
   * Stores a value with its version and tags, evicting the least recently used entry when full.
   * The engine calls it on HIT and MISS; call it yourself only for an L1 you use on its own.
   *
   * @example
   * ```ts
   * l1.set("product:42", product, product.version, ["products", "category:3"]);
   * ```
   */
  set(key: string, value: unknown, version: number | null, tags: readonly string[]): void {
    this.#entries.touch(key, { value, version, storedAt: this.now(), tags });
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
