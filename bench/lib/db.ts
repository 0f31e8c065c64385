/**
 * The in-memory "database" every contender loads from: one truth version per key, a
 * configurable query delay, and counters of loads and version queries. A load snapshots the
 * version when the query starts and answers after the delay, like a real read that was in flight
 * while a write committed: this is what lets a slow load carry an old version into the cache.
 */
export interface Row {
  key: string;
  version: number;
  payload: string;
}

export interface Db {
  /** Loads the row (counted). */
  load(key: string): Promise<Row>;
  /** Reads only the row's current version (counted separately): one database round trip. */
  version(key: string): Promise<number>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class MemoryDb implements Db {
  loads = 0;
  versionQueries = 0;
  /** Delay of one query in ms; change between workloads. */
  delayMs: number;
  readonly #versions = new Map<string, number>();
  readonly #payload: string;

  constructor(delayMs = 10, payloadBytes = 200) {
    this.delayMs = delayMs;
    this.#payload = "x".repeat(payloadBytes);
  }

  /** The committed version (1 for a key never written). Synchronous: no delay, not counted. */
  truth(key: string): number {
    return this.#versions.get(key) ?? 1;
  }

  /**
   * The row as committed now, as a write's `UPDATE … RETURNING` hands it to the application
   * (synchronous, not counted: no extra query). A write-through caches it.
   */
  row(key: string): Row {
    return { key, version: this.truth(key), payload: this.#payload };
  }

  /** Commits a new version of `key` and returns it. */
  commit(key: string): number {
    const next = this.truth(key) + 1;
    this.#versions.set(key, next);
    return next;
  }

  async load(key: string, delayMs = this.delayMs): Promise<Row> {
    this.loads++;
    const version = this.truth(key);
    if (delayMs > 0) await sleep(delayMs);
    return { key, version, payload: this.#payload };
  }

  async version(key: string): Promise<number> {
    this.versionQueries++;
    const version = this.truth(key);
    if (this.delayMs > 0) await sleep(this.delayMs);
    return version;
  }

  resetCounters(): void {
    this.loads = 0;
    this.versionQueries = 0;
  }
}
