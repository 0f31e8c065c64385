/**
 * The stale-read detector of the mixed workload. A write is acknowledged when the contender's
 * write() resolved; a read is stale when it STARTED after an acknowledged write of its key and
 * returned an older version. Reads racing a write that is not yet acknowledged are not judged.
 *
 * @example
 * const d = new StaleReadDetector();
 * d.acknowledged("k", 2);
 * const floor = d.readStarts("k");     // 2
 * d.readReturned(floor, 1);            // counts one stale read
 */
export class StaleReadDetector {
  staleReads = 0;
  readonly #acked = new Map<string, number>();

  acknowledged(key: string, version: number): void {
    this.#acked.set(key, Math.max(this.#acked.get(key) ?? 0, version));
  }

  /** The newest acknowledged version of `key` when a read starts (0 if none). */
  readStarts(key: string): number {
    return this.#acked.get(key) ?? 0;
  }

  /** Judges a finished read; true when it was stale. */
  readReturned(floor: number, version: number): boolean {
    if (version >= floor) return false;
    this.staleReads++;
    return true;
  }
}
