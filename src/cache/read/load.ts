import type { EngineContext } from "../context";
import { lateTags, type Resolved } from "../options";
import type { CacheResult } from "../types";
import type { FillReply } from "../write/fill";
import { fillLoaded, type PreparedFill, prepareFill, release } from "../write/store";
import type { Flight, LeaseCheck } from "./flight";
import { keepLeaseAlive } from "./keep-alive";
import { acquireEntry } from "./look";
import { failSafeResult, type ReadReply } from "./reply";
import { loadedResult, readBack, versionOrNull } from "./result";

/**
 * Loading under a granted lease: on the response path (a MISS) or after it (a STALE or early
 * refresh), then the fill; the lease goes back when the loader fails or its value is not
 * cached, or when its fill cannot be sent (the caller's error, see `fillOf`).
 */

/**
 * Called right before a load reads the source: the flight's sequence number it vouches with
 * (Flight.offer), and the load time this isolate expects, which is when followers look.
 */
export function loadStarts(
  ctx: EngineContext,
  key: string,
  flight?: Flight,
  lease?: LeaseCheck,
): number | undefined {
  // No entry check: the entry a check would find is the one being replaced. Under a lease, a
  // lease check can vouch for followers that join during the load (read/checks.ts).
  return flight?.sending(ctx.flights.estimateLoad(ctx.keys.prefix, key), false, lease);
}

/**
 * What a lease check of a load under `grant` compares (Flight.checkSent), or undefined when
 * none can vouch: tags known only from the loaded value (`tagsOf`) are unknown until the load
 * ends, so only the fill (which checks them) can.
 */
function leaseCheckOf<T>(
  grant: Pick<ReadReply, "tok" | "tg" | "cv">,
  opts: Resolved<T>,
): LeaseCheck | undefined {
  if (!grant.tok || opts.tagsOf) return undefined;
  const tg = Array.isArray(grant.tg) ? grant.tg : [];
  if (tg.length !== opts.tagList.length) return undefined;
  const cv = opts.versionKey ? (grant.cv ?? 0) : undefined;
  return { tok: grant.tok, cv, tags: opts.tagList, tg };
}

/**
 * Puts a value read or loaded now into the isolate's L1, if there is one, with every tag of its
 * entry (the caller's own, then `tagsOf`'s, so this isolate's bumps of either drop it), for no
 * longer than the entry stays fresh, and not at all when L1 dropped anything since `since`
 * (L1Cache.set). A `tagsOf` that throws keeps the value out of L1 (its tags are unknown); the
 * fill reports the same error as the caller's ("fill input", see `fillOf`).
 */
export function intoL1<T>(
  ctx: EngineContext,
  key: string,
  result: CacheResult<T>,
  opts: Resolved<T>,
  since: number | undefined,
): void {
  if (!ctx.l1) return;
  let tags: readonly string[];
  try {
    tags = opts.tagsOf ? [...opts.tagList, ...lateTags(result.value, opts)] : opts.tagList;
  } catch {
    return;
  }
  // And the tags the isolate learned the entry has (`need`): a reader without `tagsOf` may hit
  // an entry filled with some, and this isolate's own bump of one must drop it from L1 too.
  const learned = ctx.known.tags(ctx.keys.prefix, key);
  if (learned.length > 0) tags = [...new Set([...tags, ...learned])];
  ctx.l1.set(key, result.value, result.version, tags, { forMs: result.ttlMs, since });
}

/**
 * The fill of a value loaded under `lease`, and the answer for it. The fill is worked out
 * before anything is sent (write/store.ts `prepareFill`): null when the value is not cached,
 * and null too when the caller's functions or the value itself make the fill impossible
 * (`cacheIf`, `versionOf` or `tagsOf` throwing, a version that is not one, a tag that is not a
 * name, a value JSON.stringify refuses: a BigInt, a cycle). Such an error is the caller's: it
 * goes to `onError` as operation "fill input", not counted as a Redis error, and the value is
 * still answered (MISS, with `versionOf`'s version only when it is one), uncached. The caller
 * then gives the lease back at once, as for any uncached value: a lease left to expire held
 * every later reader of the key for `leaseTtl`, on every read when the error repeats.
 */
function fillOf<T>(
  ctx: EngineContext,
  key: string,
  lease: Pick<ReadReply, "tok" | "tg" | "cv" | "now">,
  value: T,
  opts: Resolved<T>,
): { fill: PreparedFill<T> | null; answer: CacheResult<T> } {
  let fill: PreparedFill<T> | null = null;
  try {
    fill = prepareFill(key, lease, value, opts);
  } catch (error) {
    ctx.report(error, "fill input");
  }
  // The version stored (a cached "not found": the grant's), as the entry's HITs report it.
  const version = fill ? fill.version : versionOrNull(value, opts);
  // What a HIT of the entry will answer: the parse of the JSON the fill sends (readBack).
  const answered = fill ? (JSON.parse(fill.json) as T) : readBack(value);
  return { fill, answer: loadedResult(answered, opts, version) };
}

export async function loadAndFill<T>(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  loader: () => Promise<T>,
  opts: Resolved<T>,
  started: number,
  flight?: Flight,
  /** L1's generation before the read that granted the lease (L1Cache.set's `since`). */
  l1Since?: number,
): Promise<CacheResult<T>> {
  let loaded: { value: T; ms: number };
  // The load reads the source after this: followers that joined before it may take its value
  // without waiting for the fill (Flight.offer).
  const loadSeq = loadStarts(ctx, key, flight, leaseCheckOf(reply, opts));
  const stop = keepLeaseAlive(ctx, key, reply.tok ?? "", opts, flight);
  try {
    loaded = await ctx.timed(loader, key);
  } catch (error) {
    ctx.pending.add("load_errors");
    await ctx.afterResponse(opts, release(ctx, key, reply.tok ?? ""), "lease release");
    if (reply.fs && reply.v !== undefined) {
      ctx.pending.add("fail_safe");
      return failSafeResult<T>(reply);
    }
    throw error;
  } finally {
    stop();
  }
  const { fill, answer: result } = fillOf(ctx, key, reply, loaded.value, opts);
  if (!fill) {
    flight?.settle({ ok: true, result, vouchedAt: loadSeq });
    await ctx.afterResponse(opts, release(ctx, key, reply.tok ?? ""), "lease release");
    return result;
  }
  const waitedMs = Date.now() - started - loaded.ms;
  const answer = waitedMs > 50 ? { ...result, waitedMs } : result;
  const filling = offerAndFill(
    ctx,
    key,
    reply,
    loader,
    opts,
    loaded,
    fill,
    result,
    loadSeq,
    flight,
    {
      reload: true,
      l1Since,
    },
  );
  await ctx.afterResponse(opts, filling, "fill");
  return answer;
}

/**
 * A load's value to the flight's followers, then its fill. A follower that began before the
 * load did may take the value at once (Flight.offer); the fill's compare-and-set (lease,
 * version, tags) vouches for it to those that joined before the fill was sent, and a refused
 * fill vouches for nothing (see Outcome). Refused because a write or a bump overtook the load
 * (`reload`, the first load only; with `waitUntil`, so that it never holds the leader's
 * response), the same fill.lua request takes the lease again when it is free; when followers
 * wait by then (else the lease goes straight back), this loads once more for them with the
 * leader's loader (a loader reads the source
 * each time it is called): one acquire's round trip sooner than the new flight they would
 * lead, and vouched for by its own start as any load.
 */
async function offerAndFill<T>(
  ctx: EngineContext,
  key: string,
  granted: Pick<ReadReply, "tok" | "tg" | "cv" | "now">,
  loader: () => Promise<T>,
  opts: Resolved<T>,
  loaded: { value: T; ms: number },
  fill: PreparedFill<T>,
  result: CacheResult<T>,
  loadSeq: number | undefined,
  flight: Flight | undefined,
  { reload, l1Since }: { reload: boolean; l1Since: number | undefined },
): Promise<void> {
  flight?.offer({ ok: true, result, vouchedAt: loadSeq }, granted.tok);
  // Into L1 before the fill: a refused fill then removes it again, whenever it completes; not
  // at all when this isolate wrote or invalidated anything since the read began.
  intoL1(ctx, key, result, opts, l1Since);
  const fillSeq = flight?.sending();
  flight?.settleLater(opts.leaseTtl);
  // Only after the response (waitUntil): a reload never holds the leader's own answer. Asked
  // for whether or not anyone waits yet: readers keep joining while the fill is out.
  const regrant = reload && flight !== undefined && opts.waitUntil !== undefined;
  let stored: FillReply;
  try {
    stored = await fillLoaded(ctx, key, fill, loaded.ms, regrant);
  } catch (error) {
    flight?.settle({ ok: true, result });
    throw error;
  }
  if (!stored.ok && stored.tok && flight) {
    const granted = { ...stored, tok: stored.tok };
    if (flight.waiting > 0) return reloadFor(ctx, key, granted, loader, opts, flight, result);
    // Nobody waits after all: the lease goes back at once (others may be sleeping on it).
    flight.settle({ ok: true, result });
    return release(ctx, key, stored.tok);
  }
  // The fill's id lets a check vouch for the followers that joined after it was sent.
  flight?.settle({ ok: true, result, vouchedAt: stored.ok ? fillSeq : undefined, id: stored.id });
}

/**
 * The reload for a flight's waiting followers, under the lease a refused fill took again
 * (`granted`): vouched for by its own start, filled once more, never reloaded again. When it
 * fails or its value is not cached, the lease goes back; followers then read for themselves
 * (the first load's value stays unvouched for them).
 */
async function reloadFor<T>(
  ctx: EngineContext,
  key: string,
  granted: FillReply & { tok: string },
  loader: () => Promise<T>,
  opts: Resolved<T>,
  flight: Flight,
  first: CacheResult<T>,
): Promise<void> {
  ctx.pending.add("reloads");
  const l1Since = ctx.l1?.generation; // the reload reads the source after this
  const lease = { tok: granted.tok, tg: granted.tg, cv: granted.cv, now: granted.now ?? 0 };
  const reloadSeq = loadStarts(ctx, key, flight, leaseCheckOf(lease, opts));
  let reloaded: { value: T; ms: number };
  const stop = keepLeaseAlive(ctx, key, lease.tok, opts, flight);
  try {
    reloaded = await ctx.timed(loader, key);
  } catch (error) {
    ctx.pending.add("load_errors");
    flight.settle({ ok: true, result: first });
    await release(ctx, key, lease.tok);
    ctx.report(error, "reload loader");
    return;
  } finally {
    stop();
  }
  const { fill, answer: fresh } = fillOf(ctx, key, lease, reloaded.value, opts);
  if (!fill) {
    flight.settle({ ok: true, result: fresh, vouchedAt: reloadSeq });
    return release(ctx, key, lease.tok);
  }
  return offerAndFill(ctx, key, lease, loader, opts, reloaded, fill, fresh, reloadSeq, flight, {
    reload: false,
    l1Since,
  });
}

export async function refresh<T>(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  loader: () => Promise<T>,
  opts: Resolved<T>,
): Promise<void> {
  let loaded: { value: T; ms: number };
  const stop = keepLeaseAlive(ctx, key, reply.tok ?? "", opts);
  try {
    loaded = await ctx.timed(loader, key);
  } catch (error) {
    // The stale value keeps being served; the loader's error is not a cache fault.
    ctx.pending.add("refresh_errors");
    ctx.report(error, "background refresh loader");
    return release(ctx, key, reply.tok ?? "");
  } finally {
    stop();
  }
  const { fill } = fillOf(ctx, key, reply, loaded.value, opts);
  if (!fill) return release(ctx, key, reply.tok ?? "");
  await fillLoaded(ctx, key, fill, loaded.ms);
}

/**
 * A refresh after the response, for an entry the read-only look served (early refresh, or
 * STALE): takes the lease with the acquire script, then loads and fills.
 */
export async function refreshLater<T>(
  ctx: EngineContext,
  key: string,
  loader: () => Promise<T>,
  opts: Resolved<T>,
  early: boolean,
): Promise<void> {
  ctx.random(); // the draw every read request takes (seeded tests rely on the sequence)
  const reply = await acquireEntry(ctx, key, opts, early);
  if (!reply.tok) return; // another caller is already refreshing, or it was refilled
  if (early) ctx.pending.add("early_refreshes");
  await refresh(ctx, key, reply, loader, opts);
}
