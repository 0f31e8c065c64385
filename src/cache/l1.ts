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

export class L1Cache {
  readonly #entries = new Map<string, L1Entry>();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    readonly now: () => number = Date.now,
  ) {}

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

  set(key: string, value: unknown, version: number | null, tags: readonly string[]): void {
    this.#entries.delete(key);
    this.#entries.set(key, { value, version, storedAt: this.now(), tags });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  deleteTagged(tags: readonly string[]): void {
    const wanted = new Set(tags);
    for (const [key, entry] of this.#entries) {
      if (entry.tags.some((t) => wanted.has(t))) this.#entries.delete(key);
    }
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
