import { runScript } from "../cache/redis";
import { releaseScript } from "../cache/scripts";
import type { Redis } from "../redis/client";
import type { Services } from "../runtime/services";
import { describeError } from "./apply-event";
import { Budget } from "./budget";
import { type DrainReport, drainOutbox, emptyDrainReport } from "./drain";

/**
 * Closes the staleness window after a Redis outage in seconds instead of a cron period: the
 * first request that reaches Redis again triggers an outbox drain in `waitUntil`.
 *
 * How a request knows there may be work, cheaply:
 * - an isolate-scoped flag per prefix, set when a request of this isolate saw the cache fail
 *   (a write that could not apply its event, a read that bypassed Redis). No request;
 * - a Redis-side marker `{prefix}:outbox:pending`, for isolates that saw nothing: set by a
 *   recovering isolate before it drains (so work is not lost if it dies) and by a drain that
 *   ran out of budget, deleted by a drain that caught up. Any isolate reads it at most once
 *   per MARKER_CHECK_MS, in `waitUntil`, on a request that reached Redis anyway.
 *
 * Bounded: at most one drain at a time per prefix across isolates (a lock in Redis, see
 * `drainLockKey`), at most one attempt per isolate per MIN_DRAIN_INTERVAL_MS, each within
 * RECOVERY_DRAIN's subrequest and time budgets.
 */

/** How often an isolate reads the Redis-side marker (one GET, off the response path). */
export const MARKER_CHECK_MS = 5_000;
/** Least time between two recovery drains of one isolate (a failing drain is not hammered). */
export const MIN_DRAIN_INTERVAL_MS = 1_000;
/** A drain whose request died is considered gone after this long. */
const RUNNING_STALE_MS = 30_000;
/** Marker lifetime: a crashed drainer's marker outlives it, but not forever. */
const MARKER_TTL_MS = 15 * 60_000;

/**
 * Recovery drains take every committed row (no grace: the rows they are for were given up by
 * their writers), with a small budget: 20 subrequests (≈ 6 rounds of 500 rows) and 5 s.
 */
export const RECOVERY_DRAIN = {
  olderThanMs: 0,
  batch: 500,
  timeBudgetMs: 5_000,
  subrequests: 20,
} as const;

interface IsolateState {
  /** This isolate saw the cache fail since its last successful drain. */
  suspect: boolean;
  /** When the running drain started (0: none). */
  runningSince: number;
  lastDrainAt: number;
  lastMarkerCheckAt: number;
}

// Plain values only: nothing here is an I/O object, so sharing it across requests is safe.
const isolate = new Map<string, IsolateState>();

function stateOf(prefix: string): IsolateState {
  let state = isolate.get(prefix);
  if (!state) {
    state = { suspect: false, runningSince: 0, lastDrainAt: 0, lastMarkerCheckAt: 0 };
    isolate.set(prefix, state);
  }
  return state;
}

export const markerKey = (prefix: string) => `${prefix}:outbox:pending`;

/**
 * The recovery drain lock of a prefix: after an outage every isolate that saw a fault (and every
 * one that reads the marker) starts a drain at about the same time, and each SELECTed the same
 * oldest rows and applied them again (8 isolates applied 1,500 rows 10,000 times, and every
 * apply bumped their tags again: each product list was invalidated once per drain, right when
 * Postgres was busiest). A lease rather than a mutex: it expires after DRAIN_LOCK_MS, longer
 * than a recovery drain runs, so a drainer whose request died frees it by itself. An isolate
 * that finds it held stays suspect and tries again a second later (one SET per try).
 */
export const drainLockKey = (prefix: string) => `${prefix}:outbox:draining`;
const DRAIN_LOCK_MS = 30_000;

/** Tells every isolate that this prefix's outbox has rows a drain should look at. */
export async function setPendingMarker(redis: Redis, prefix: string): Promise<void> {
  await redis.set(markerKey(prefix), Date.now(), { px: MARKER_TTL_MS });
}

/**
 * A drain that ran out of budget with rows left (not one that caught up, nor one that found
 * Redis down) should leave the marker, so requests of any isolate continue where it stopped.
 */
export const leftRowsBehind = (report: DrainReport): boolean =>
  report.stoppedBy !== "caught-up" &&
  report.stoppedBy !== "redis-down" &&
  report.stoppedBy !== "busy"; // the lock's holder keeps the marker up to date

/** For tests: forget what this isolate knows (as a fresh isolate would). */
export function resetRecoveryState(prefix?: string): void {
  if (prefix === undefined) isolate.clear();
  else isolate.delete(prefix);
}

/** What `afterRequest` decided, for logs and tests. */
export type RecoveryDecision = "none" | "suspect" | "busy" | "drain" | "check-marker";

/**
 * Call once per request, after the handler, with the request's services. Schedules the
 * marker check or a recovery drain through `services.background`, so it runs after the
 * response on the request's own pool and `dispose` waits for it.
 *
 * @example
 * await next();
 * afterRequest(c.var.services);
 */
export function afterRequest(services: Services, now = Date.now()): RecoveryDecision {
  const { reached, faulted } = services.contact;
  if (!reached && !faulted) return "none"; // this request never used the cache
  const prefix = services.config.CACHE_PREFIX;
  const state = stateOf(prefix);
  if (faulted) {
    // Redis failed for this request: whatever it wrote may not be applied. Drain later.
    state.suspect = true;
    return "suspect";
  }
  if (state.runningSince > 0 && now - state.runningSince < RUNNING_STALE_MS) return "busy";
  if (state.suspect) {
    if (now - state.lastDrainAt < MIN_DRAIN_INTERVAL_MS) return "busy";
    startDrain(services, state, now, true);
    return "drain";
  }
  if (now - state.lastMarkerCheckAt < MARKER_CHECK_MS) return "none";
  state.lastMarkerCheckAt = now;
  state.runningSince = now;
  services.background(
    services.redis.get(markerKey(prefix)).then(
      (marker) => {
        state.runningSince = 0;
        if (marker !== null && Date.now() - state.lastDrainAt >= MIN_DRAIN_INTERVAL_MS) {
          startDrain(services, state, Date.now(), false);
        }
      },
      (error: unknown) => {
        state.runningSince = 0;
        state.suspect = true;
        throw error;
      },
    ),
    "outbox marker check",
  );
  return "check-marker";
}

function startDrain(services: Services, state: IsolateState, now: number, announce: boolean) {
  state.runningSince = now;
  state.lastDrainAt = now;
  services.background(
    recoveryDrain(services, announce).then(
      (report) => {
        state.runningSince = 0;
        state.lastDrainAt = Date.now();
        // Still suspect if the drain could not finish: the next request tries again.
        state.suspect = report.stoppedBy !== "caught-up";
      },
      (error: unknown) => {
        state.runningSince = 0;
        state.lastDrainAt = Date.now();
        throw error;
      },
    ),
    "outbox recovery drain",
  );
}

/**
 * One bounded drain of every committed pending row of the prefix. `announce` sets the marker
 * first, so other isolates take over if this one dies mid-drain; a drain that catches up
 * deletes it, one that runs out of budget leaves it for the next request (of any isolate).
 */
export async function recoveryDrain(services: Services, announce: boolean): Promise<DrainReport> {
  const { redis } = services;
  const prefix = services.config.CACHE_PREFIX;
  const budget = new Budget(RECOVERY_DRAIN.subrequests);
  if (announce) {
    budget.spend(1);
    await setPendingMarker(redis, prefix);
  }
  const lock = crypto.randomUUID();
  budget.spend(1);
  const taken = await redis.set(drainLockKey(prefix), lock, { nx: true, px: DRAIN_LOCK_MS });
  if (taken !== "OK") {
    console.log(`outbox recovery drain (${prefix}): another isolate is draining; busy`);
    return emptyDrainReport("busy");
  }
  let report: DrainReport;
  try {
    report = await drainOutbox(services, RECOVERY_DRAIN, budget);
  } finally {
    budget.spend(1);
    // Only if it is still this drain's (it may have expired and been taken): the engine's
    // compare-and-delete of a lease, which this lock is.
    await runScript(redis, releaseScript, [drainLockKey(prefix)], [lock]).catch(
      (error: unknown) => {
        // It expires by itself: another isolate drains at most DRAIN_LOCK_MS later.
        console.warn(`outbox drain lock not released: ${describeError(error)}`);
      },
    );
  }
  try {
    if (report.stoppedBy === "caught-up") await redis.del(markerKey(prefix));
    else if (!announce && leftRowsBehind(report)) await setPendingMarker(redis, prefix);
  } catch (error) {
    console.warn(`outbox marker not updated: ${describeError(error)}`);
  }
  console.log(
    `outbox recovery drain (${prefix}): ${report.applied} applied, ${report.queued} queued, ${report.parked} parked in ${report.rounds} rounds, ${report.elapsedMs} ms; ${report.stoppedBy}` +
      (report.error ? `; ${report.error}` : ""),
  );
  return report;
}
