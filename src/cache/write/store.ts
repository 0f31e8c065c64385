import type { EngineContext } from "../context";
import { assertVersion, cacheable, type Resolved } from "../options";
import { jitterTtl } from "../policy";
import type { ReadReply } from "../read/reply";
import { isErrorReply } from "../redis";
import { newToken } from "../token";
import { type EntryWrite, type FillReply, releaseLease, snapshotTags, storeEntry } from "./fill";

/**
 * Storing an entry: the fill of a granted lease (checked against what the granting read
 * captured) and the write-through, both one `fill.lua` call, counted in the isolate. What the
 * value and the caller's functions decide (cacheIf, versionOf, tagsOf, the JSON) is worked
 * out and checked first, before anything is sent (`prepareFill`, `prepareEntry`): a fill that
 * cannot be sent is known while the lease can still be given back.
 */

/** An entry checked and serialized, not sent yet: what `send` needs besides the lease token. */
export interface PreparedEntry<T> {
  json: string;
  /**
   * The version stored: `versionOf`'s, or the captured one for a negative entry; what the MISS
   * that loaded it answers too, as the entry's HITs will.
   */
  version: number | null;
  /** The windows it is stored with (a negative entry's own, see `prepareFill`). */
  opts: Resolved<T>;
  tags: ReadonlyArray<readonly [string, string]>;
}

/** The fill of a loaded value under a granted lease, prepared (`prepareFill`). */
export interface PreparedFill<T> extends PreparedEntry<T> {
  token: string;
  /** The caller's options, for a refused fill that takes the lease again. */
  callerOpts: Resolved<T>;
}

/**
 * The fill of `value` under the lease `read` granted, worked out before anything is sent:
 * null when the value is not cached (`cacheable`: undefined, an unversioned-away null, or
 * `cacheIf` false). Throws what the caller's functions or the value throw, or a TypeError or
 * InvalidKeyError for what they returned (a version that is not one, a tag that is not a
 * name): those are the caller's errors, found while the lease can still be given back.
 *
 * @example
 *   const fill = prepareFill("product:1", grant, row, opts); // throws on { n: 1n }
 *   if (fill) await fillLoaded(ctx, "product:1", fill, loadMs);
 */
export function prepareFill<T>(
  key: string,
  read: Pick<ReadReply, "tok" | "tg" | "cv" | "now">,
  value: T,
  opts: Resolved<T>,
): PreparedFill<T> | null {
  if (!cacheable(value, opts)) return null;
  // A negative entry under a version key is stored as the version Redis knew when the lease
  // was granted, so the next advance (a create, an outbox event) invalidates it; a create that
  // landed during the load revoked the lease. (Its windows: prepareEntry.)
  const version = !opts.versionKey
    ? null
    : value == null // undefined is never cached (cacheable): a cached "not found"
      ? (read.cv ?? 0)
      : opts.versionOf
        ? opts.versionOf(value)
        : null;
  // Own tags check the counters the read captured; tags known only from the value (and any
  // counter not captured) check that nothing was bumped since the load began.
  const counters = Array.isArray(read.tg) ? read.tg : [];
  const bound = `@${Math.floor(read.now)}`;
  const tags = snapshotTags(value, opts, (i) => counters[i] ?? bound, bound);
  const entry = prepareEntry(key, value, version, opts, tags);
  return { ...entry, token: read.tok ?? "", callerOpts: opts };
}

/**
 * Sends a prepared fill. With `regrant`, a refused fill takes the lease again for a reload
 * when it is free (its reply then carries the grant: see FillReply). Rejects only for Redis.
 */
export async function fillLoaded<T>(
  ctx: EngineContext,
  key: string,
  fill: PreparedFill<T>,
  loadMs: number,
  regrant = false,
): Promise<FillReply> {
  ctx.pending.add("read_requests");
  const opts = fill.callerOpts;
  const again = regrant ? { leaseTtl: opts.leaseTtl, ownTags: opts.tagList.length } : undefined;
  try {
    return await send(ctx, key, fill.token, fill, loadMs, "fills", again);
  } catch (error) {
    // Refused by Redis (a value past the database's request size limit, out of memory): the
    // lease goes back at once, as for a value that is not cached. Kept until leaseTtl, every
    // later read of the key waited it out, then loaded and was refused again (+2 s per read).
    // Not after a timeout or a network error: Redis may be gone, and the lease expires anyway.
    if (isErrorReply(error)) await release(ctx, key, fill.token).catch(() => {});
    throw error;
  }
}

/** Gives `token`'s lease of `key` back (one `release.lua`, counted); nothing without a token. */
export async function release(ctx: EngineContext, key: string, token: string): Promise<void> {
  if (!token) return;
  ctx.pending.add("read_requests");
  await releaseLease(ctx.target, key, token);
}

/**
 * One `fill.lua` call of a write-through (`token` "") of an entry checked and serialized by
 * `prepareEntry`; counts what it answered and tells the isolate's records (L1, known entries)
 * whether the entry is now there. Rejects only for Redis.
 */
export function store<T>(
  ctx: EngineContext,
  key: string,
  entry: PreparedEntry<T>,
): Promise<FillReply> {
  return send(ctx, key, "", entry, 0, "writes");
}

/**
 * An entry as fill.lua takes it, checked: throws a TypeError for a version that is not one (or
 * none under a version key), for undefined, for a value without JSON (a function), or for what
 * JSON.stringify refuses (a BigInt, a cycle). Tag names were checked when `tags` was built
 * (resolveOptions, snapshotTags). A cached "not found" (null with `negativeTtl`) gets its own
 * windows: `negativeTtl`, no grace, no fail-safe, whether a load or a write-through stores it.
 * Nothing is sent.
 */
export function prepareEntry<T>(
  key: string,
  value: T,
  version: number | null,
  opts: Resolved<T>,
  tags: ReadonlyArray<readonly [string, string]>,
): PreparedEntry<T> {
  if (opts.versionKey && version === null) {
    throw new TypeError(`cache key ${key}: versionKey is set but no version was given`);
  }
  if (value === undefined) throw new TypeError(`cache key ${key}: cannot cache undefined`);
  // A numeric string ("3", from a driver's bigint column) is taken as its number, so a
  // result's `version` is the number its type says.
  const exact = version === null ? null : assertVersion(version, `cache key ${key}: version`);
  const json = JSON.stringify(value);
  // A function or a Symbol (or a toJSON giving undefined) has no JSON at all.
  if (typeof json !== "string") throw new TypeError(`cache key ${key}: value has no JSON form`);
  const negative = value === null && opts.negativeTtl !== undefined && opts.negativeTtl > 0;
  const windows = negative
    ? { ...opts, ttl: opts.negativeTtl as number, staleTtl: 0, failSafeMs: 0 }
    : opts;
  return { json, version: exact, opts: windows, tags };
}

async function send<T>(
  ctx: EngineContext,
  key: string,
  token: string,
  entry: PreparedEntry<T>,
  loadMs: number,
  counter: "fills" | "writes",
  regrant?: EntryWrite["regrant"],
): Promise<FillReply> {
  const { opts, tags } = entry;
  const freshMs = jitterTtl(opts.ttl, opts.jitter, ctx.random);
  const sent = Date.now();
  const reply = await storeEntry(ctx.target, key, {
    token,
    json: entry.json,
    version: entry.version,
    versionKey: opts.versionKey,
    freshMs,
    graceMs: opts.staleTtl,
    expiresAtMs: opts.expiresAtMs,
    failSafeMs: opts.failSafeMs,
    tags,
    loadMs,
    id: newToken(),
    regrant,
  });
  const prefix = ctx.keys.prefix;
  if (reply.ok) {
    ctx.pending.add(counter);
    const names = tags.map(([name]) => name);
    const until = opts.expiresAtMs === undefined ? Infinity : opts.expiresAtMs;
    const freshUntil = Math.min(sent + freshMs, until);
    ctx.known.learn(prefix, key, { tags: names, freshUntil, versionKey: opts.versionKey });
  } else {
    ctx.pending.add(`dropped_${reply.r ?? "refused"}`);
    ctx.l1?.delete(key);
    ctx.known.notFresh(prefix, key);
  }
  return reply;
}
