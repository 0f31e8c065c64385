import type { EngineContext } from "../context";
import type { Resolved } from "../options";
import { shouldRefreshEarly } from "../policy";
import type { CacheResult } from "../types";
import type { CheckSpec } from "./checks";
import type { FlightPlan } from "./coalesce";
import type { Flight } from "./flight";
import type { FlightRegistry } from "./flights";
import { intoL1, loadAndFill, loadStarts, refresh, refreshLater } from "./load";
import { countLook, hitDeclares, look, readEntry } from "./look";
import { failSafeResult, fromEntry, type ReadReply } from "./reply";
import { loadedResult, readBack } from "./result";
import { nextCheckDelay } from "./wait";

/**
 * The read path of `getOrLoad` after L1 and coalescing: look (read/look.ts), then serve a HIT
 * or STALE, load under a granted lease (read/load.ts), or wait for another isolate's load by
 * the time it announced (read/wait.ts) until the wait budget is spent.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One caller's read, as the leader of `flight` when there is one.
 *
 * @example
 *   const result = await readThrough(ctx, "product:1", () => loadProduct(1), opts);
 */
export async function readThrough<T>(
  ctx: EngineContext,
  key: string,
  loader: () => Promise<T>,
  opts: Resolved<T>,
  /**
   * The isolate's flight this caller leads, if any: told how long the caller may still take,
   * and settled with what vouches for its value to followers (see read/coalesce.ts).
   */
  flight?: Flight,
): Promise<CacheResult<T>> {
  const started = Date.now();
  // Before any request: a reply on its way while this isolate writes cannot refill L1 with the
  // value the write replaced (L1Cache.generation).
  const l1Since = ctx.l1?.generation;
  let waited = false;
  let backoffs = 0;
  for (;;) {
    let found: { reply: ReadReply; seq: number | undefined };
    flight?.busyUntil(Date.now() + opts.leaseTtl); // a read, then maybe a load under a lease
    // Drawn before the request, as every read always has (seeded tests rely on the sequence).
    const draw = ctx.random();
    try {
      found = await look(ctx, key, opts, waited, flight);
    } catch (error) {
      ctx.fault(error, "read");
      ctx.pending.add("bypass");
      // Loaded from the source after this tick: it vouches for the followers that began
      // before it, as a load under a lease does (Flight.offer).
      const loadSeq = loadStarts(ctx, key, flight);
      const bypassed = await bypass(ctx, loader, opts);
      flight?.settle({ ok: true, result: bypassed, vouchedAt: loadSeq });
      return bypassed;
    }
    const { reply, seq } = found;
    countLook(ctx, key, reply, { sample: !waited, draw, polling: waited });

    if (reply.s === "HIT") {
      const result = fromEntry<T>(reply, "HIT");
      intoL1(ctx, key, result, opts, l1Since);
      if (
        result.value !== null && // a negative entry just expires: no early refresh
        reply.fu !== undefined &&
        shouldRefreshEarly(reply.now, reply.fu, reply.lt ?? 0, opts.beta, ctx.random)
      ) {
        ctx.background(opts, refreshLater(ctx, key, loader, opts, true), "early refresh");
      }
      const hit = waited ? { ...result, waitedMs: Date.now() - started } : result;
      flight?.settle({ ok: true, result: hit, vouchedAt: seq, id: reply.id });
      return hit;
    }

    if (reply.s === "STALE") {
      if (reply.tok) {
        ctx.background(opts, refresh(ctx, key, reply, loader, opts), "stale refresh");
      } else if ((reply.wait ?? 0) <= 0) {
        // The read-only look cannot take the lease: ask for it after the response.
        ctx.background(opts, refreshLater(ctx, key, loader, opts, false), "stale refresh");
      }
      const stale = fromEntry<T>(reply, "STALE");
      flight?.settle({ ok: true, result: stale, vouchedAt: seq });
      return stale;
    }

    if (reply.tok) return loadAndFill(ctx, key, reply, loader, opts, started, flight, l1Since);

    // Someone else holds the lease: sleep about the load time it announced, then look once
    // (src/cache/read/wait.ts); a look finding the lease gone takes it over (the holder
    // died). Until the value appears or the wait budget is spent.
    if (!waited) ctx.pending.add("lease_waits");
    waited = true;
    const remaining = opts.waitBudget - (Date.now() - started);
    const next = nextCheckDelay(
      {
        eta: reply.eta,
        estimate: reply.est,
        leasePttl: reply.wait,
        backoffs,
      },
      ctx.random,
    );
    if (next.backoff) backoffs++;
    if (remaining <= 0) {
      ctx.pending.add("lease_timeouts");
      flight?.busyUntil(Date.now() + opts.leaseTtl);
      let value: { value: T; ms: number };
      const loadSeq = loadStarts(ctx, key, flight); // vouches like a bypass (above)
      try {
        value = await ctx.timed(loader, key);
      } catch (error) {
        ctx.pending.add("load_errors");
        // Same rule as the lease holder: an expired entry kept for fail-safe beats an error.
        if (reply.fs && reply.v !== undefined) {
          ctx.pending.add("fail_safe");
          return failSafeResult<T>(reply);
        }
        throw error;
      }
      const own = { ...loadedResult(readBack(value.value), opts), waitedMs: Date.now() - started };
      flight?.settle({ ok: true, result: own, vouchedAt: loadSeq });
      return own;
    }
    const delay = Math.min(next.delay, remaining);
    flight?.busyUntil(Date.now() + delay + opts.leaseTtl);
    await sleep(delay);
  }
}

/**
 * The read path as a flight's plan (read/coalesce.ts). A class rather than an object of
 * closures: one is made per read, and bundlers that keep names (wrangler's default) wrap every
 * closure created per call in a defineProperty.
 */
export class ReadPlan<T> implements FlightPlan<T> {
  readonly waitBudget: number;
  readonly leaseTtl: number;

  constructor(
    readonly registry: FlightRegistry,
    readonly id: string,
    private readonly ctx: EngineContext,
    private readonly key: string,
    private readonly loader: () => Promise<T>,
    private readonly opts: Resolved<T>,
  ) {
    this.waitBudget = opts.waitBudget;
    this.leaseTtl = opts.leaseTtl;
  }

  lead(flight: Flight, budget: number): Promise<CacheResult<T>> {
    const opts = budget === this.opts.waitBudget ? this.opts : { ...this.opts, waitBudget: budget };
    return readThrough(this.ctx, this.key, this.loader, opts, flight);
  }

  /**
   * A follower whose budget ran out loads itself, without filling. When that load fails too,
   * the same rule as for the leader: an entry kept for fail-safe beats an error (one look, only
   * with `failSafe` on).
   */
  async giveUp(waitedMs: number): Promise<CacheResult<T>> {
    const { ctx, key, opts } = this;
    ctx.pending.add("lease_timeouts");
    try {
      const { value } = await ctx.timed(this.loader);
      return { ...loadedResult(readBack(value), opts), waitedMs };
    } catch (error) {
      ctx.pending.add("load_errors");
      const kept = opts.failSafeMs > 0 ? await keptEntry<T>(ctx, key, opts) : undefined;
      if (!kept) throw error;
      if (kept.failSafe) ctx.pending.add("fail_safe");
      return { ...kept, waitedMs };
    }
  }

  onFollow(): void {
    this.ctx.pending.add("coalesced");
  }

  checkSpec(): CheckSpec | undefined {
    const { ctx, key, opts } = this;
    if (opts.replica) return undefined;
    const { versionKey, tags, own } = hitDeclares(opts, ctx.known.tags(ctx.keys.prefix, key));
    return { prefix: ctx.keys.prefix, key, versionKey, tags, own };
  }

  onChecked(): void {
    this.ctx.pending.add("check_vouched");
  }
}

/**
 * What Redis holds for `key` after a load failed: a HIT or STALE entry as it is, an expired one
 * kept for fail-safe as STALE with `failSafe`; undefined when there is none or Redis cannot
 * say (the caller's error stands).
 */
async function keptEntry<T>(
  ctx: EngineContext,
  key: string,
  opts: Resolved<T>,
): Promise<CacheResult<T> | undefined> {
  let reply: ReadReply;
  try {
    reply = await readEntry(ctx, key, opts);
  } catch (error) {
    ctx.fault(error, "read");
    return undefined;
  }
  if (reply.v === undefined) return undefined;
  if (reply.s === "HIT" || reply.s === "STALE") return fromEntry<T>(reply, reply.s);
  return reply.fs ? failSafeResult<T>(reply) : undefined;
}

export async function bypass<T>(
  ctx: EngineContext,
  loader: () => Promise<T>,
  opts: Resolved<T>,
): Promise<CacheResult<T>> {
  let value: T;
  try {
    ({ value } = await ctx.timed(loader));
  } catch (error) {
    ctx.pending.add("load_errors");
    throw error;
  }
  return { ...loadedResult(readBack(value), opts), status: "BYPASS" };
}
