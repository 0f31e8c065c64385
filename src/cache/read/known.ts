import { BoundedMap } from "../bounded-map";

/**
 * What this isolate has learned about entries from Redis's replies: the tags each entry was
 * stored with, and until when it was fresh. Plain data at module scope, like the flights
 * (coalesce.ts), so every per-request engine of the isolate shares it.
 *
 * Two uses, neither of which correctness depends on:
 * - **Tags to declare.** A read-only hit must name every key it reads in KEYS (Upstash's
 *   `allow-key-locking`), tag counters included, but tags computed from the value (`tagsOf`, a
 *   product's category) are known only once it is loaded. The isolate remembers them from its
 *   fills and from the hit script's `need` answer; a read declares them up front. A guess that
 *   is wrong (never seen here, or the entry's tags changed) costs one more request, never a
 *   wrong answer: the script refuses to serve an entry whose tags it was not given.
 * - **Miss prediction** (strict reads only, see read/plan.ts): a key this isolate has no fresh
 *   record of is likely a miss, so the read goes straight to the writing acquire script, which
 *   also serves a hit; a key it saw fresh goes to the read-only hit script first.
 *
 * Bounded per prefix (the coldest out first); a forgotten key only costs the first request again.
 *
 * @example
 *   const known = new KnownEntries(1000);
 *   known.learn("ec", "product:1", { tags: ["category:3"], freshUntil: Date.now() + 60_000 });
 *   known.tags("ec", "product:1"); // ["category:3"]
 *   known.freshNow("ec", "product:1"); // true
 */
export class KnownEntries {
  /** Per prefix, per key: a Map keeps insertion order, which eviction follows. */
  readonly #prefixes = new Map<string, BoundedMap<string, Known>>();
  /** Counts insertions: how far back an entry was (re)inserted, for eviction order. */
  #inserts = 0;

  /** Some entry was learned under a version key not named like it (scan on version bumps). */
  #aliased = false;

  constructor(readonly maxEntries = 10_000) {}

  /** Records an entry's tags (when given) and the local time it stops being fresh (when given). */
  learn(
    prefix: string,
    key: string,
    what: { tags?: readonly string[]; freshUntil?: number; versionKey?: string },
  ): void {
    if (what.versionKey !== undefined && what.versionKey !== key) this.#aliased = true;
    let entries = this.#prefixes.get(prefix);
    if (!entries) {
      entries = new BoundedMap(this.maxEntries);
      this.#prefixes.set(prefix, entries);
    }
    const had = entries.get(key);
    if (had) {
      // Updated in place: this runs on every read, and a Map delete + set each time was the
      // largest cost of learning. An entry moves to the young end only once it has aged half
      // the bound, so a hot entry is still never the one evicted.
      if (what.tags !== undefined) had.tags = what.tags;
      if (what.freshUntil !== undefined) had.freshUntil = what.freshUntil;
      if (what.versionKey !== undefined) had.versionKey = what.versionKey;
      if (this.#inserts - had.inserted > this.maxEntries / 2) {
        had.inserted = ++this.#inserts;
        entries.touch(key, had);
      }
      return;
    }
    entries.set(key, {
      tags: what.tags ?? [],
      freshUntil: what.freshUntil ?? 0,
      versionKey: what.versionKey,
      inserted: ++this.#inserts,
    });
  }

  /** The entry is no longer believed fresh (this isolate invalidated or overwrote it). */
  expire(prefix: string, key: string): void {
    const had = this.#prefixes.get(prefix)?.get(key);
    if (had) had.freshUntil = 0;
  }

  /**
   * This isolate bumped tags or versions: entries it knows under them are no longer believed
   * fresh (O(entries known), and invalidations are rare next to reads).
   */
  expireWhere(prefix: string, tags: readonly string[], versionKeys: readonly string[]): void {
    // The common case, a version key named like its entry, needs no scan.
    for (const name of versionKeys) this.expire(prefix, name);
    if (tags.length === 0 && (versionKeys.length === 0 || !this.#aliased)) return;
    for (const e of this.#prefixes.get(prefix)?.values() ?? []) {
      if (e.freshUntil === 0) continue;
      if (
        (e.versionKey !== undefined && versionKeys.includes(e.versionKey)) ||
        e.tags.some((t) => tags.includes(t))
      ) {
        e.freshUntil = 0;
      }
    }
  }

  /** Tags last seen on the entry (tagsOf ones included); [] when unknown. */
  tags(prefix: string, key: string): readonly string[] {
    return this.#prefixes.get(prefix)?.get(key)?.tags ?? [];
  }

  /** Whether the isolate last saw the entry fresh and its fresh window has not ended. */
  freshNow(prefix: string, key: string, now = Date.now()): boolean {
    const e = this.#prefixes.get(prefix)?.get(key);
    return e !== undefined && now < e.freshUntil;
  }

  /**
   * No entry of `prefix` is believed fresh any more (a pattern purge: which keys it removed is
   * not known here). Their tags stay known: a purge does not change an entry's tags.
   */
  expirePrefix(prefix: string): void {
    for (const e of this.#prefixes.get(prefix)?.values() ?? []) e.freshUntil = 0;
  }
}

/** What the isolate learned of one entry. */
interface Known {
  tags: readonly string[];
  /** Local time (ms) the entry stops being fresh; 0 = not believed fresh. */
  freshUntil: number;
  versionKey: string | undefined;
  /** `#inserts` when it was last (re)inserted. */
  inserted: number;
}

/** The isolate's record: module scope, shared by every engine built in this isolate. */
export const isolateKnown = new KnownEntries();

/**
 * The tag names a read declares: the caller's own tags first (the acquire script captures
 * their counters, in this order), then tags learned from the entry that the caller did not name.
 */
export function declaredTags(own: readonly string[], learned: readonly string[]): string[] {
  if (learned.length === 0) return [...own];
  const all = [...own];
  for (const tag of learned) if (!own.includes(tag)) all.push(tag);
  return all;
}
