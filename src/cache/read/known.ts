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
 * Bounded in all, whatever the number of prefixes (an app may give each tenant its own): at most
 * `maxEntries` entries over every prefix (the coldest out first) and the invalidation records of
 * `MAX_PREFIXES` prefixes. A forgotten key only costs the first request again.
 *
 * @example
 *   const known = new KnownEntries(1000);
 *   known.learn("ec", "product:1", { tags: ["category:3"], freshUntil: Date.now() + 60_000 });
 *   known.tags("ec", "product:1"); // ["category:3"]
 *   known.freshNow("ec", "product:1"); // true
 */
export class KnownEntries {
  /**
   * Every prefix's entries in one map keyed `prefix NUL key`, so the bound is the isolate's,
   * not a prefix's: 10,000 per prefix was 10,000 times the number of tenants.
   */
  readonly #entries: BoundedMap<string, Known>;
  /** Per prefix: what this isolate invalidated there (see `expired`); the least used out first. */
  readonly #prefixes = new BoundedMap<string, PrefixRecord>(MAX_PREFIXES);
  /** Counts insertions: how far back an entry was (re)inserted, for eviction order. */
  #inserts = 0;
  /**
   * Orders learning against invalidation: an entry is believed fresh only when it was learned
   * (`Known.since`) no earlier than every bump of its tags and version key and the last purge
   * of its prefix. A bump records one number instead of scanning the entries: the scan cost
   * 6 ms on the request path of an `invalidateTags` with 10k entries known, measured.
   */
  #epoch = 0;

  /** Counts prefix records created or moved young (`#record`). */
  #records = 0;

  /** Some entry was learned under a version key not named like it (bumps of those are kept). */
  #aliased = false;

  constructor(readonly maxEntries = 10_000) {
    this.#entries = new BoundedMap(maxEntries);
  }

  /**
   * The map key of an entry. A read asks for the same entry two or three times (is it fresh,
   * its tags, what it learned): the last id is kept, so those build and hash one string, not
   * three (a new concatenation is hashed again at each lookup).
   */
  #id(prefix: string, key: string): string {
    if (key !== this.#lastKey || prefix !== this.#lastPrefix) {
      this.#lastKey = key;
      this.#lastPrefix = prefix;
      this.#lastId = entryId(prefix, key);
    }
    return this.#lastId;
  }
  #lastKey: string | undefined;
  #lastPrefix: string | undefined;
  #lastId = "";

  /** Records an entry's tags (when given) and the local time it stops being fresh (when given). */
  learn(
    prefix: string,
    key: string,
    what: { tags?: readonly string[]; freshUntil?: number; versionKey?: string },
  ): void {
    if (what.versionKey !== undefined && what.versionKey !== key) this.#aliased = true;
    this.#record(prefix);
    const id = this.#id(prefix, key);
    const entries = this.#entries;
    const had = entries.get(id);
    if (had) {
      // Updated in place: this runs on every read, and a Map delete + set each time was the
      // largest cost of learning. An entry moves to the young end only once it has aged half
      // the bound, so a hot entry is still never the one evicted.
      if (what.tags !== undefined) had.tags = what.tags;
      if (what.freshUntil !== undefined) {
        had.freshUntil = what.freshUntil;
        had.since = this.#epoch;
        had.mine = false;
      }
      if (what.versionKey !== undefined) had.versionKey = what.versionKey;
      if (this.#inserts - had.inserted > this.maxEntries / 2) {
        had.inserted = ++this.#inserts;
        entries.touch(id, had);
      }
      return;
    }
    entries.set(id, {
      tags: what.tags ?? [],
      freshUntil: what.freshUntil ?? 0,
      since: this.#epoch,
      versionKey: what.versionKey,
      inserted: ++this.#inserts,
      mine: false,
    });
  }

  /** The entry is no longer believed fresh: this isolate invalidated or overwrote it. */
  expire(prefix: string, key: string): void {
    const had = this.#entries.get(this.#id(prefix, key));
    if (had) {
      had.freshUntil = 0;
      had.mine = true;
    }
  }

  /** The entry is no longer believed fresh: Redis answered it stale, missing or refused. */
  notFresh(prefix: string, key: string): void {
    const had = this.#entries.get(this.#id(prefix, key));
    if (had) had.freshUntil = 0;
  }

  /**
   * This isolate bumped tags or versions: entries it knows under them are no longer believed
   * fresh. O(tags + version keys), whatever the number of entries known: each bump is recorded
   * and `freshNow` compares it with when the entry was learned.
   */
  expireWhere(prefix: string, tags: readonly string[], versionKeys: readonly string[]): void {
    // The common case, a version key named like its entry, is the entry itself.
    for (const name of versionKeys) this.expire(prefix, name);
    if (tags.length === 0 && (versionKeys.length === 0 || !this.#aliased)) return;
    const record = this.#record(prefix);
    const at = ++this.#epoch;
    for (const tag of tags) record.tagBumps.touch(tag, at);
    if (this.#aliased) for (const name of versionKeys) record.versionBumps.touch(name, at);
  }

  /** Tags last seen on the entry (tagsOf ones included); [] when unknown. */
  tags(prefix: string, key: string): readonly string[] {
    return this.#entries.get(this.#id(prefix, key))?.tags ?? [];
  }

  /**
   * Whether the isolate last saw the entry fresh, its fresh window has not ended, and nothing
   * this isolate did since (a bump of one of its tags or of its version key, a purge) says
   * otherwise.
   */
  freshNow(prefix: string, key: string, now = Date.now()): boolean {
    const e = this.#entries.get(this.#id(prefix, key));
    if (e === undefined || now >= e.freshUntil) return false;
    // Learning created the record; when it was dropped for room since, the entry was learned
    // before any record there is now: not believed fresh (see `#record`).
    const record = this.#prefixes.get(prefix);
    if (record === undefined) return false;
    return !expired(record, e);
  }

  /**
   * Whether this isolate invalidated or overwrote the entry since it last learned it fresh (a
   * write, a bump of one of its tags or of its version key, a purge), so that what Redis holds
   * may be older than a write acknowledged here. Unknown entries: false.
   */
  invalidatedHere(prefix: string, key: string): boolean {
    const e = this.#entries.get(this.#id(prefix, key));
    if (e === undefined) return false;
    const record = this.#prefixes.get(prefix);
    return e.mine || record === undefined || expired(record, e);
  }

  /**
   * No entry of `prefix` is believed fresh any more (a pattern purge: which keys it removed is
   * not known here). Their tags stay known: a purge does not change an entry's tags.
   */
  expirePrefix(prefix: string): void {
    this.#record(prefix).floor = ++this.#epoch;
  }

  #record(prefix: string): PrefixRecord {
    const found = this.#prefixes.get(prefix);
    if (found) {
      // Least recently used order, cheaply: a record moves to the young end only once a quarter
      // of the bound's worth of records was created after it (as entries do in `learn`).
      if (this.#records - found.created > MAX_PREFIXES / 4) {
        found.created = ++this.#records;
        this.#prefixes.touch(prefix, found);
      }
      return found;
    }
    const record: PrefixRecord = {
      created: ++this.#records,
      // A bump forgotten for room still counts: everything learned before it is expired (a
      // wrong "not fresh" costs one request, a wrong "fresh" two).
      tagBumps: new BoundedMap(MAX_BUMPS, (_, at) => raiseFloor(record, at)),
      versionBumps: new BoundedMap(MAX_BUMPS, (_, at) => raiseFloor(record, at)),
      // Entries of this prefix learned before the record existed were learned under a record
      // dropped for room, whose bumps are forgotten: expired (a wrong "fresh" costs two requests).
      floor: ++this.#epoch,
    };
    this.#prefixes.set(prefix, record);
    return record;
  }
}

/** Bumps remembered per prefix, for tags and for aliased version keys each. */
const MAX_BUMPS = 1000;

/** Prefixes whose invalidations are remembered (an isolate rarely serves more than a few). */
export const MAX_PREFIXES = 256;

function entryId(prefix: string, key: string): string {
  return `${prefix}\u0000${key}`;
}

/** Invalidated by this isolate after it was learned (see KnownEntries.#epoch). */
function expired(record: PrefixRecord, e: Known): boolean {
  if (e.since < record.floor) return true;
  if (record.tagBumps.size > 0) {
    for (const tag of e.tags) if ((record.tagBumps.get(tag) ?? -1) > e.since) return true;
  }
  const name = e.versionKey;
  return name !== undefined && (record.versionBumps.get(name) ?? -1) > e.since;
}

function raiseFloor(record: PrefixRecord, at: number): void {
  if (at > record.floor) record.floor = at;
}

/** The invalidations this isolate made under one prefix. */
interface PrefixRecord {
  /** `#records` when it was created or last moved young. */
  created: number;
  /** Per tag, per aliased version key: the epoch of this isolate's last bump of it. */
  tagBumps: BoundedMap<string, number>;
  versionBumps: BoundedMap<string, number>;
  /** Entries learned before this epoch are expired (a purge, or a bump forgotten for room). */
  floor: number;
}

/** What the isolate learned of one entry. */
interface Known {
  tags: readonly string[];
  /** Local time (ms) the entry stops being fresh; 0 = not believed fresh. */
  freshUntil: number;
  /** The epoch when `freshUntil` was last learned (KnownEntries.#epoch). */
  since: number;
  versionKey: string | undefined;
  /** `#inserts` when it was last (re)inserted. */
  inserted: number;
  /** This isolate invalidated or overwrote it since it was last learned fresh (`expire`). */
  mine: boolean;
}

/** The isolate's record: module scope, shared by every engine built in this isolate. */
export const isolateKnown = new KnownEntries();

/**
 * The tag names a read declares: the caller's own tags first (the acquire script captures
 * their counters, in this order), then tags learned from the entry that the caller did not name.
 */
export function declaredTags(
  own: readonly string[],
  learned: readonly string[],
): readonly string[] {
  // Read only (KEYS and one JSON array): the caller's own list serves as is.
  if (learned.length === 0) return own;
  const all = [...own];
  for (const tag of learned) if (!own.includes(tag)) all.push(tag);
  return all;
}
