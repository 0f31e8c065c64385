import type { EngineContext } from "../context";
import { runScript } from "../redis";
import { extendScript } from "../scripts/index";
import type { Flight } from "./flight";

/**
 * Keeping a lease alive while its load runs. The lease is short (`leaseTtl`, 2 s by default) so
 * that a holder that dies frees its key soon; a load that outlives it used to lose the single
 * flight: another isolate took the lease over and loaded too, the isolate's own followers took
 * the leader for dead and led flights of their own, and a slow database (a locked table, a
 * compute waking up) got one query per waiting request instead of one per key (found by an
 * audit: 30 concurrent reads of a key whose query took 4 s made 30 queries).
 */

/**
 * Extends `token`'s lease of `key` every third of `leaseTtl` until the returned function is
 * called (when the load settles), for at most `loadTimeout`, when the load has one. Each
 * extension is one request (`extend.lua`, counted as `lease_extends`), so a load shorter than a
 * third of the lease costs nothing. The isolate's flight is kept alive with it (its followers
 * do not take the leader for dead) even when Redis fails or a write revoked the lease; the
 * Redis side stops then (the fill will be refused, and a revoked lease is not ours to extend).
 *
 * @example
 *   const stop = keepLeaseAlive(ctx, key, reply.tok, opts, flight);
 *   try {
 *     loaded = await ctx.timed(loader, key);
 *   } finally {
 *     stop();
 *   }
 */
export function keepLeaseAlive(
  ctx: EngineContext,
  key: string,
  token: string,
  opts: { leaseTtl: number; versionKey?: string; loadTimeout?: number },
  flight?: Flight,
): () => void {
  // Only a load with a deadline keeps its lease: without one a slow loader and a hung one look
  // alike, and a hung one must not hold the key (its lease expires, and another caller loads).
  if (!token || opts.loadTimeout === undefined) return () => {};
  const every = Math.max(1, Math.floor(opts.leaseTtl / 3));
  const until = Date.now() + opts.loadTimeout;
  const keys = [ctx.keys.lease(key)];
  if (opts.versionKey) keys.push(ctx.keys.version(opts.versionKey));
  const args = [token, opts.leaseTtl, opts.versionKey ? "1" : "0"];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let inRedis = true;
  const tick = async () => {
    timer = undefined;
    if (stopped || Date.now() >= until) return;
    flight?.busyUntil(Date.now() + opts.leaseTtl);
    if (inRedis) {
      ctx.pending.add("lease_extends");
      try {
        inRedis = (await runScript(ctx.redis, extendScript, keys, args)) === 1;
      } catch (error) {
        inRedis = false;
        ctx.fault(error, "lease extend");
      }
    }
    if (!stopped) timer = setTimeout(tick, every);
  };
  timer = setTimeout(tick, every);
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
  };
}
