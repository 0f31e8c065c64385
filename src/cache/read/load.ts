import type { EngineContext } from "../context";
import { cacheable, lateTags, type Resolved } from "../options";
import type { CacheResult } from "../types";
import { releaseLease } from "../write/fill";
import { fillLoaded } from "../write/store";
import type { Flight } from "./flight";
import { acquireEntry } from "./look";
import { failSafeResult, type ReadReply } from "./reply";
import { loadedResult } from "./result";

/**
 * Loading under a granted lease: on the response path (a MISS) or after it (a STALE or early
 * refresh), then the fill; the lease goes back when the loader fails or its value is not
 * cached.
 */

/**
 * Called right before a load reads the source: the flight's sequence number it vouches with
 * (Flight.offer), and the load time this isolate expects, which is when followers look.
 */
export function loadStarts(ctx: EngineContext, key: string, flight?: Flight): number | undefined {
  // Not checkable: the entry a check would find is the one being replaced (read/checks.ts).
  return flight?.sending(ctx.flights.estimateLoad(ctx.keys.prefix, key), false);
}

export async function loadAndFill<T>(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  loader: () => Promise<T>,
  opts: Resolved<T>,
  started: number,
  flight?: Flight,
): Promise<CacheResult<T>> {
  let loaded: { value: T; ms: number };
  // The load reads the source after this: followers that joined before it may take its value
  // without waiting for the fill (Flight.offer).
  const loadSeq = loadStarts(ctx, key, flight);
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
  }
  if (!cacheable(loaded.value, opts)) {
    const answer = loadedResult(loaded.value, opts);
    flight?.settle({ ok: true, result: answer, vouchedAt: loadSeq });
    await ctx.afterResponse(opts, release(ctx, key, reply.tok ?? ""), "lease release");
    return answer;
  }
  const result = loadedResult(loaded.value, opts);
  flight?.offer({ ok: true, result, vouchedAt: loadSeq });
  // Into L1 before the fill: a refused fill then removes it again, whenever it completes.
  ctx.l1?.set(key, result.value, result.version, [
    ...opts.tagList,
    ...lateTags(loaded.value, opts),
  ]);
  const waitedMs = Date.now() - started - loaded.ms;
  const answer = waitedMs > 50 ? { ...result, waitedMs } : result;
  // The fill's compare-and-set (lease, version, tags) vouches for the value to the followers
  // that joined before it was sent; a refused fill vouches for nothing (see Outcome).
  const fillSeq = flight?.sending();
  flight?.settleLater(opts.leaseTtl);
  const fill = fillLoaded(ctx, key, reply, loaded.value, opts, loaded.ms).then(
    (stored) => {
      // The fill's id lets a check vouch for the followers that joined after it was sent.
      const vouchedAt = stored.ok ? fillSeq : undefined;
      flight?.settle({ ok: true, result, vouchedAt, id: stored.id });
    },
    (error: unknown) => {
      flight?.settle({ ok: true, result });
      throw error;
    },
  );
  await ctx.afterResponse(opts, fill, "fill");
  return answer;
}

export async function refresh<T>(
  ctx: EngineContext,
  key: string,
  reply: ReadReply,
  loader: () => Promise<T>,
  opts: Resolved<T>,
): Promise<void> {
  let loaded: { value: T; ms: number };
  try {
    loaded = await ctx.timed(loader, key);
  } catch (error) {
    // The stale value keeps being served; the loader's error is not a cache fault.
    ctx.pending.add("refresh_errors");
    ctx.onError(error, "background refresh loader");
    return release(ctx, key, reply.tok ?? "");
  }
  if (!cacheable(loaded.value, opts)) return release(ctx, key, reply.tok ?? "");
  await fillLoaded(ctx, key, reply, loaded.value, opts, loaded.ms);
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

export async function release(ctx: EngineContext, key: string, token: string): Promise<void> {
  if (!token) return;
  ctx.pending.add("read_requests");
  await releaseLease(ctx.target, key, token);
}
