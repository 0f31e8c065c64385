import { BoundedMap } from "../bounded-map";
import type { EngineContext } from "../context";
import type { Resolved } from "../options";
import { newToken } from "../token";
import { acquire } from "./acquire";
import { readCarrying } from "./checks";
import type { Flight } from "./flight";
import { type HitRead, readHit } from "./hit";
import { declaredTags } from "./known";
import type { ReadReply } from "./reply";

/**
 * One look at an entry: the read-only hit script, then (unless it served a value or someone
 * else is loading) the writing acquire script. Also what the isolate learns and counts from
 * each reply.
 */

/**
 * One look at the entry (read/plan in src/cache/README.md): the read-only hit script first,
 * then, unless it served a value or someone else is loading, the writing acquire script. In
 * strict mode a key this isolate has no fresh record of is likely a miss: the look goes to
 * acquire directly, which serves a hit too. `seq` is the flight sequence taken before the
 * request that answered (what a HIT or STALE vouches with).
 */
export async function look<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
  waited: boolean,
  flight: Flight | undefined,
): Promise<{ reply: ReadReply; seq: number | undefined }> {
  let seq = flight?.sending();
  const prefix = ctx.keys.prefix;
  // This isolate's own write was refused while Redis is full (noteWriteRefused): every strict
  // read of the prefix takes the acquire path, and none is served by the read-only hit.
  const refused = refusedWrites.size > 0 && refusedWrites.has(prefix);
  if (!opts.replica && !waited && (refused || !ctx.known.freshNow(prefix, key))) {
    // Redis full and refusing writing scripts (noeviction, Upstash's default): the entry may
    // still be there, and the read-only hit is still served, so a key this isolate did not
    // invalidate is looked at that way first for a while. One it did invalidate is not: its
    // invalidation may have been refused too, and the entry be older than a write acknowledged
    // here; its acquire fails and it loads around the cache (BYPASS). Nor is any key of a
    // prefix where a write of this isolate was refused: a refused tag bump or version advance
    // covers entries the isolate never read (and so does not know).
    // Only while Redis is full: the common predicted miss pays no second lookup.
    const full = Date.now() < writesRefusedUntil;
    const mine = refused || (full && ctx.known.invalidatedHere(prefix, key));
    if (!full || mine) {
      try {
        const reply = await acquireEntry(ctx, key, opts, false);
        // Redis takes writes again: what was refused is the outbox's to apply now.
        if (refused) refusedWrites.delete(prefix);
        return { reply, seq };
      } catch (error) {
        if (!isOutOfMemory(error)) throw error;
        writesRefusedUntil = Date.now() + OOM_HOLD_MS;
        if (refused || ctx.known.invalidatedHere(prefix, key)) throw error;
        seq = flight?.sending();
      }
    }
  }
  const sent = Date.now();
  const hit = await readEntry(ctx, key, opts);
  ctx.flights.recordRoundTrip(Date.now() - sent);
  if (hit.s !== "MISS" || (hit.wait ?? 0) > 0) return { reply: hit, seq };
  seq = flight?.sending();
  return { reply: await acquireEntry(ctx, key, opts, false), seq };
}

/**
 * Until when (local ms) reads skip the miss prediction because Redis answered a writing script
 * with OOM (it is full and evicts nothing): module scope, a plain number, isolate-wide.
 */
let writesRefusedUntil = 0;
const OOM_HOLD_MS = 1000;

/**
 * Prefixes where Redis refused one of this isolate's writes (an invalidation, a write-through)
 * for want of memory, until a writing script of that prefix goes through again. Module scope,
 * plain strings, bounded (an app may give each tenant its own prefix).
 */
const refusedWrites = new BoundedMap<string, true>(256);

/**
 * Called when Redis refused a write of this isolate (`isOutOfMemory`): until a writing script
 * of `prefix` goes through again, strict reads of the prefix are not served by the read-only
 * hit (look). The write's entry (or the entries under its tag or version) may still hold the
 * value it replaced, and this isolate acknowledged the write to its caller: a read of its own
 * that followed would have been served that value (found by a race audit, eviction.test.ts).
 *
 * @example
 *   catch (error) { if (isOutOfMemory(error)) noteWriteRefused("ec"); throw error; }
 */
export function noteWriteRefused(prefix: string): void {
  writesRefusedUntil = Date.now() + OOM_HOLD_MS;
  refusedWrites.touch(prefix, true);
}

/**
 * Whether Redis refused a command because it is out of memory (`OOM command not allowed when
 * used memory > 'maxmemory'`), anywhere in the error's cause chain.
 *
 * @example
 *   isOutOfMemory(new Error("OOM command not allowed when used memory > 'maxmemory'")); // true
 */
export function isOutOfMemory(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current instanceof Error; depth++) {
    if (/\bOOM\b/.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/**
 * The read-only hit script, declaring the caller's tags and those this isolate learned the
 * entry has; when the entry has others (`need`), it learns them and asks once more. A second
 * `need` (the entry's tags changed in between) is a MISS: nothing unchecked is served.
 */
export function readEntry<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
): Promise<ReadReply> {
  return askOnceMore(ctx, key, opts, HIT);
}

/**
 * The writing acquire script: a new lease token, this isolate's load-time estimate, the tags
 * this isolate learned. An entry with tags it did not declare answers `need` without taking
 * anything: it learns them and asks once more (that second call takes the lease if the tags
 * changed yet again).
 */
export function acquireEntry<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
  early: boolean,
): Promise<ReadReply> {
  return askOnceMore(ctx, key, opts, early ? ACQUIRE_EARLY : ACQUIRE);
}

/** Which script a look asks (a constant, not a closure: see askOnceMore). */
const HIT = 0;
const ACQUIRE = 1;
const ACQUIRE_EARLY = 2;
type Script = typeof HIT | typeof ACQUIRE | typeof ACQUIRE_EARLY;

/**
 * The `need` protocol both looks share: declare what the isolate learned, and when the entry
 * has tags that were not declared, learn them and ask once more. Module functions rather than
 * closures made per read: bundlers that keep names (wrangler's default) wrap every closure
 * created per call in a defineProperty.
 */
async function askOnceMore<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
  script: Script,
): Promise<ReadReply> {
  const prefix = ctx.keys.prefix;
  let reply = await ask(ctx, key, opts, script, ctx.known.tags(prefix, key), false);
  if (reply.r === "need" && reply.need) {
    ctx.pending.add("tag_retries");
    ctx.known.learn(prefix, key, { tags: reply.need });
    reply = await ask(ctx, key, opts, script, reply.need, true);
    if (reply.need) ctx.known.learn(prefix, key, { tags: reply.need });
  }
  noteFreshness(ctx, key, reply, opts.versionKey);
  return reply;
}

/**
 * What a hit read of a key declares: its version key, and the caller's tags then those the
 * isolate learned the entry has (`learned`). A check of the entry (read/checks.ts) declares
 * the same.
 */
export function hitDeclares<T>(opts: Resolved<T>, learned: readonly string[]): HitRead {
  return {
    versionKey: opts.versionKey,
    tags: declaredTags(opts.tagList, learned),
    own: opts.tagList.length,
    replica: opts.replica,
  };
}

function ask<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
  script: Script,
  learned: readonly string[],
  lastTry: boolean,
): Promise<ReadReply> {
  ctx.pending.add("read_requests");
  if (script === HIT) {
    const what = hitDeclares(opts, learned);
    // A strict read carries the checks queued for late readers of other keys (read/checks.ts).
    return opts.replica ? readHit(ctx.target, key, what) : readCarrying(ctx, key, what);
  }
  return acquire(ctx.target, key, {
    versionKey: opts.versionKey,
    tags: opts.tagList,
    learned,
    token: newToken(),
    leaseTtl: opts.leaseTtl,
    early: script === ACQUIRE_EARLY,
    // The load time a granted lease announces to waiters when the entry has none (wait.ts).
    estimateMs: ctx.flights.estimateLoad(ctx.keys.prefix, key) ?? 0,
    lastTry,
  });
}

export function noteFreshness(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  versionKey: string | undefined,
): void {
  ctx.pending.observeRedisTime(reply.now);
  if (reply.s === "HIT" && reply.fu !== undefined) {
    const freshUntil = Date.now() + (reply.fu - reply.now);
    ctx.known.learn(ctx.keys.prefix, key, { freshUntil, versionKey });
  } else {
    ctx.known.notFresh(ctx.keys.prefix, key);
  }
}

/**
 * Counts one look in the isolate (no script writes stats): a waiter's looks count no miss
 * and are no sample; a peek (`get`) is never sampled.
 */
export function countLook(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  look: { sample: boolean; draw: number; polling?: boolean },
): void {
  const t = ctx.pending;
  if (reply.r === "version" || reply.r === "tag") t.add("invalidated_reads");
  if (reply.s === "HIT") t.add("hits");
  else if (reply.s === "STALE") t.add("stale_hits");
  else if (!look.polling) t.add("misses");
  const rate = ctx.hot.sampleRate;
  if (look.sample && rate > 0 && look.draw < rate) {
    t.sample(key, 1 / rate, Math.floor(reply.now / ctx.hot.windowMs));
  }
}
