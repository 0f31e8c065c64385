import type { EngineContext } from "../context";
import { assertVersion, type Resolved } from "../options";
import { jitterTtl } from "../policy";
import type { ReadReply } from "../read/reply";
import { newToken } from "../token";
import { type EntryWrite, type FillReply, snapshotTags, storeEntry } from "./fill";

/**
 * Storing an entry: the fill of a granted lease (checked against what the granting read
 * captured) and the write-through, both one `fill.lua` call, counted in the isolate.
 */

/**
 * The fill of a load under the lease `read` granted. With `regrant`, a refused fill takes the
 * lease again for a reload when it is free (its reply then carries the grant: see FillReply).
 */
export async function fillLoaded<T>(
  ctx: EngineContext,
  key: string,
  read: Pick<ReadReply, "tok" | "tg" | "cv" | "now">,
  value: T,
  opts: Resolved<T>,
  loadMs: number,
  regrant = false,
): Promise<FillReply> {
  let version = opts.versionKey && opts.versionOf && value !== null ? opts.versionOf(value) : null;
  let entryOpts = opts;
  if (value === null && opts.negativeTtl && opts.negativeTtl > 0) {
    // A negative entry: short-lived, no grace or fail-safe, and under a version key stored as
    // the version Redis knew when the lease was granted, so the next advance (a create, an
    // outbox event) invalidates it; a create that landed during the load revoked the lease.
    entryOpts = { ...opts, ttl: opts.negativeTtl, staleTtl: 0, failSafeMs: 0 };
    if (opts.versionKey) version = read.cv ?? 0;
  }
  // Own tags check the counters the read captured; tags known only from the value (and any
  // counter not captured) check that nothing was bumped since the load began.
  const counters = Array.isArray(read.tg) ? read.tg : [];
  const bound = `@${Math.floor(read.now)}`;
  const tags = snapshotTags(value, opts, (i) => counters[i] ?? bound, bound);
  ctx.pending.add("read_requests");
  const token = read.tok ?? "";
  const again = regrant ? { leaseTtl: opts.leaseTtl, ownTags: opts.tagList.length } : undefined;
  return store(ctx, key, token, value, version, entryOpts, tags, loadMs, "fills", again);
}

/**
 * One `fill.lua` call; counts what it answered and tells the isolate's records (L1, known
 * entries) whether the entry is now there.
 */
export async function store<T>(
  ctx: EngineContext,
  key: string,
  token: string,
  value: T,
  version: number | null,
  opts: Resolved<T>,
  tags: ReadonlyArray<readonly [string, string]>,
  loadMs: number,
  counter: "fills" | "writes",
  regrant?: EntryWrite["regrant"],
): Promise<FillReply> {
  if (opts.versionKey && version === null) {
    throw new TypeError(`cache key ${key}: versionKey is set but no version was given`);
  }
  if (value === undefined) throw new TypeError(`cache key ${key}: cannot cache undefined`);
  if (version !== null) assertVersion(version, `cache key ${key}: version`);
  const freshMs = jitterTtl(opts.ttl, opts.jitter, ctx.random);
  const sent = Date.now();
  const reply = await storeEntry(ctx.target, key, {
    token,
    json: JSON.stringify(value),
    version,
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
