import { type OutboxLag, pruneAndLag } from "../domain/outbox";
import type { SweepDecision } from "../domain/outbox-sweep";
import type { Warmable } from "../domain/warmable";
import type { Services } from "../runtime/services";
import { describeError } from "./apply-event";
import { Budget } from "./budget";
import { type DrainOptions, type DrainReport, drainOutbox } from "./drain";
import { recordHeartbeat } from "./heartbeat";
import { leftRowsBehind, setPendingMarker } from "./recovery";
import { closeSweep, openSweep } from "./sweep-tick";

/**
 * The cron tick: drain the outbox, then warm the hottest keys, within one subrequest budget.
 *
 * Hot-key windows need no work here: each window is a sorted set with a TTL of
 * (windows + 1) × window length set by each stats flush, and `hotKeys` merges the recent ones
 * with decaying weights, so old windows roll off by themselves.
 */

export { Budget, type DrainOptions, type DrainReport, drainOutbox };

// ---------------------------------------------------------------- warmer

export interface WarmOptions {
  /** Hot keys considered. Default 100. */
  hotKeys?: number;
  /**
   * Reload entries with less fresh time left than this (stale and missing ones always).
   * Default 30 s. `freshness` reports remaining time, not the entry's TTL, so a fraction of
   * the TTL would need one more request per key.
   */
  refreshWithinMs?: number;
  /** Subrequests (Redis requests + SQL queries) the warmer may spend. Default 40. */
  budget?: number;
}

export interface WarmReport {
  hot: number;
  /** Hot keys a warmable claims that are missing or within `refreshWithinMs` of expiry. */
  stale: number;
  missing: number;
  /**
   * Hot keys no warmable claims (lists, another release's shape generation…): left to the read
   * path, their freshness not read.
   */
  unmatched: number;
  reloaded: number;
  byEntity: Record<string, number>;
  /** Rows no longer in Postgres (deleted): nothing to write. */
  notFound: number;
  /** Writes refused by the cache (a newer version or tag bump arrived meanwhile). */
  refused: number;
  /** Keys left for a later run because the budget ran out. */
  skipped: number;
  /**
   * Keys whose rows could not be read (their entity's query failed: `errors` says why): left
   * for the read path and the next run. Not `notFound`: nothing says they are gone.
   */
  failed: number;
  queries: number;
  redisRequests: number;
  /** Why the run stopped before doing everything; null when it did not. */
  stoppedEarly: string | null;
  errors: string[];
}

function emptyWarmReport(): WarmReport {
  return {
    hot: 0,
    stale: 0,
    missing: 0,
    unmatched: 0,
    reloaded: 0,
    byEntity: {},
    notFound: 0,
    failed: 0,
    refused: 0,
    skipped: 0,
    queries: 0,
    redisRequests: 0,
    stoppedEarly: null,
    errors: [],
  };
}

/** The auto-pipeline sends at most this many commands per request. */
const PIPELINE_MAX = 1000;

interface Group {
  warmable: Warmable<unknown>;
  ids: Map<number, string>;
}

/**
 * Keeps the hottest keys warm: `hotKeys(N)` (1 request) → `freshness` of all of them
 * (1 request) → the missing or nearly expired ones grouped by the first warmable whose `parse`
 * accepts them → ONE `loadMany` query per entity → every value written with a versioned
 * `writeThrough`, issued together through `services.batchCache`, whose client auto-pipelines
 * them into one request.
 * The writes carry `tagsAsOf` = the Redis time read before loading and the row's version, so a
 * write or tag bump that lands while the warmer loads always wins over the warmer.
 */
/** The first warmable that claims `key`, with the id it reads from it (each parse runs once). */
function ownerOf(
  warmables: readonly Warmable<unknown>[],
  key: string,
): { warmable: Warmable<unknown>; id: number } | undefined {
  for (const warmable of warmables) {
    const id = warmable.parse(key);
    if (id !== null) return { warmable, id };
  }
  return undefined;
}

export async function warmHotKeys(
  services: Services,
  warmables: readonly Warmable<unknown>[],
  options: WarmOptions = {},
  budget = new Budget(options.budget ?? 40),
): Promise<WarmReport> {
  const report = emptyWarmReport();
  const { cache, db } = services;
  const n = options.hotKeys ?? 100;
  const within = options.refreshWithinMs ?? 30_000;

  if (budget.left < 2) {
    report.stoppedEarly = `budget: ${budget.left} subrequests left, hotKeys + freshness need 2`;
    return report;
  }
  budget.take(1);
  report.redisRequests++;
  const hot = await cache.hotKeys(n);
  report.hot = hot.length;
  if (hot.length === 0) return report;
  // Only the keys a warmable claims are worth a freshness read: the others (list pages,
  // another release's shape generation) are left to the read path whatever their state, and a
  // tick whose hot keys are all such keys spends no second request.
  const claimed: { key: string; warmable: Warmable<unknown>; id: number }[] = [];
  for (const { key } of hot) {
    const owner = ownerOf(warmables, key);
    if (owner) claimed.push({ key, ...owner });
    else report.unmatched++;
  }
  if (claimed.length === 0) return report;
  budget.take(1);
  report.redisRequests++;
  const { now, fresh } = await cache.freshness(claimed.map((c) => c.key));

  const groups = new Map<Warmable<unknown>, Group>();
  for (const { key, warmable, id } of claimed) {
    const left = fresh.get(key) ?? null;
    if (left !== null && left >= within) continue;
    report.stale++;
    if (left === null) report.missing++;
    const group = groups.get(warmable) ?? { warmable, ids: new Map<number, string>() };
    groups.set(warmable, group);
    group.ids.set(id, key);
  }
  if (groups.size === 0) return report;

  // Biggest groups first: when the budget cannot cover every entity, it covers the most keys.
  const ordered = [...groups.values()].sort((a, b) => b.ids.size - a.ids.size);
  const writeRequests = (keys: number) => Math.ceil(keys / PIPELINE_MAX);
  let keysToWrite = 0;
  const chosen: Group[] = [];
  for (const group of ordered) {
    // Its query, plus a write request if its keys do not fit the pipeline already paid for.
    const cost = 1 + writeRequests(keysToWrite + group.ids.size) - writeRequests(keysToWrite);
    if (!budget.take(cost)) {
      report.skipped += group.ids.size;
      report.stoppedEarly = `subrequest budget of ${budget.limit} spent; ${group.warmable.entity} (${group.ids.size} keys) left for a later run`;
      continue;
    }
    keysToWrite += group.ids.size;
    chosen.push(group);
  }
  if (chosen.length === 0) return report;

  // One entity after the other, on the one connection the invocation's pool already holds
  // (the drain's): issued together, each query made the pool open a connection of its own, a
  // WebSocket and a Postgres start-up per entity (3 for 3 entities, test/workers/costs.test.ts),
  // to save a few milliseconds that a background job does not need.
  const loaded: { group: Group; rows: Map<number, unknown> | null }[] = [];
  for (const group of chosen) {
    try {
      loaded.push({ group, rows: await group.warmable.loadMany(db, [...group.ids.keys()]) });
    } catch (error) {
      report.errors.push(`${group.warmable.entity} loadMany: ${describeError(error)}`);
      loaded.push({ group, rows: null });
    } finally {
      report.queries++;
    }
  }

  const writes: Promise<void>[] = [];
  for (const { group, rows } of loaded) {
    if (!rows) {
      report.failed += group.ids.size;
      continue;
    }
    for (const [id, key] of group.ids) {
      const value = rows.get(id);
      // loadMany leaves out ids it did not find (never null): nothing to warm.
      if (value === undefined || value === null) {
        report.notFound++;
        continue;
      }
      const entity = group.warmable.entity;
      const entry = group.warmable.entry(value);
      const version = entry.versionOf ? entry.versionOf(value) : null;
      writes.push(
        services.batchCache
          .writeThrough(key, value, version, { ...entry, tagsAsOf: now })
          .then((result) => {
            if (result.written) {
              report.reloaded++;
              report.byEntity[entity] = (report.byEntity[entity] ?? 0) + 1;
            } else report.refused++;
          })
          .catch((error: unknown) => {
            report.errors.push(`${key}: ${describeError(error)}`);
          }),
      );
    }
  }
  // Issued in one go (no await in between) through the batching engine, whose client
  // auto-pipelines them: one request per PIPELINE_MAX, wherever the warmer runs (the cron, or
  // POST /admin/warm on a request's services).
  report.redisRequests += Math.ceil(writes.length / PIPELINE_MAX);
  await Promise.all(writes);
  if (report.errors.length > 5) {
    report.errors = [...report.errors.slice(0, 5), `… ${report.errors.length - 5} more`];
  }
  return report;
}

export function describeWarm(report: WarmReport): string {
  const byEntity = Object.entries(report.byEntity)
    .map(([entity, count]) => `${entity} ${count}`)
    .join(", ");
  return (
    `warm: ${report.hot} hot, ${report.stale} stale/missing, reloaded ${report.reloaded}` +
    (byEntity ? ` (${byEntity})` : "") +
    ` in ${report.queries} queries, ${report.redisRequests} Redis requests` +
    (report.unmatched ? `; ${report.unmatched} not warmable` : "") +
    (report.refused ? `; ${report.refused} refused as outdated` : "") +
    (report.notFound ? `; ${report.notFound} gone from Postgres` : "") +
    (report.failed ? `; ${report.failed} not read (query failed)` : "") +
    (report.stoppedEarly ? `; stopped early: ${report.stoppedEarly}` : "") +
    (report.errors.length ? `; errors: ${report.errors.join(" | ")}` : "")
  );
}

// ---------------------------------------------------------------- the tick

/**
 * Subrequests the drain leaves for the warmer (hotKeys + freshness + a query per entity +
 * the pipelined writes). The drain comes first, but never starves the warmer entirely.
 */
export const WARM_RESERVE = 10;

export interface ScheduledOptions {
  drain?: DrainOptions;
  warm?: WarmOptions;
  /** Subrequests for the whole tick (drain + lag + warm + heartbeat). Default 40. */
  budget?: number;
}

export interface ScheduledReport {
  cron: string;
  scheduledTime: number;
  /**
   * Whether the tick read the outbox, and why (OUTBOX_SWEEP_MINUTES: a quiet tick leaves
   * Postgres alone, src/domain/outbox-sweep.ts).
   */
  sweep: SweepDecision;
  /** The drain, or why it did not run (`skipped`: a quiet tick in sweep mode). */
  drain: DrainReport | { error: string } | { skipped: string };
  /** The outbox lag, and how many applied rows past OUTBOX_RETENTION_HOURS the tick deleted. */
  lag: (OutboxLag & { pruned: number }) | null;
  warm: WarmReport | { error: string };
  subrequests: number;
}

/**
 * One cron tick. The drain runs first (correctness before speed), then the outbox lag is read
 * for the heartbeat (with the retention of applied rows, in the same statement), then the warmer
 * gets what is left of the budget. A failing stage is reported and does not stop the next one.
 * With OUTBOX_SWEEP_MINUTES, a quiet tick (no write since a clean sweep, which is recent) skips
 * the drain and the lag: no Postgres at all unless the warmer has hot keys to reload.
 */
export async function runScheduled(
  services: Services,
  tick: { cron: string; scheduledTime: number },
  warmables: readonly Warmable<unknown>[],
  options: ScheduledOptions = {},
): Promise<ScheduledReport> {
  const budget = new Budget(options.budget ?? options.warm?.budget ?? 40);
  // The heartbeat comes first in the accounting: it always runs (openSweep spends what the
  // outbox's side costs: the state's read, the lag statement, the record).
  budget.spend(1);
  const { CACHE_PREFIX, OUTBOX_RETENTION_HOURS } = services.config;
  const sweep = await openSweep(services, Date.now(), budget);
  if (!sweep.decision.sweep) {
    // A quiet tick leaves Postgres alone: the warmer and the heartbeat only.
    const { why } = sweep.decision;
    return finishTick(services, tick, warmables, options, budget, {
      sweep: sweep.decision,
      drain: { skipped: why },
      lag: null,
    });
  }

  let drain: DrainReport | { error: string };
  try {
    drain = await drainOutbox(services, { reserve: WARM_RESERVE, ...options.drain }, budget);
    // A caught-up cron drain leaves the recovery marker alone: it skips rows younger than its
    // grace (30 s), which may be exactly the rows an isolate gave up on and marked. The next
    // recovery drain (no grace) deletes the marker once it has caught up; a marker left with
    // nothing behind it costs one empty drain.
    if (leftRowsBehind(drain)) {
      // Out of budget with rows left: the next requests (any isolate) continue the drain.
      budget.spend(1);
      await setPendingMarker(services.redis, services.config.CACHE_PREFIX).catch((error: unknown) =>
        console.warn(`outbox marker not set: ${describeError(error)}`),
      );
    }
  } catch (error) {
    drain = { error: describeError(error) };
    console.error(`drain failed: ${drain.error}`);
  }

  let lag: ScheduledReport["lag"] = null;
  try {
    lag = await pruneAndLag(services.db, CACHE_PREFIX, OUTBOX_RETENTION_HOURS);
  } catch (error) {
    console.warn(`outbox lag unavailable: ${describeError(error)}`);
  }

  await closeSweep(services, sweep, drain, lag);
  return finishTick(services, tick, warmables, options, budget, {
    sweep: sweep.decision,
    drain,
    lag,
  });
}

/** The warmer, then the heartbeat and the tick's log line. */
async function finishTick(
  services: Services,
  tick: { cron: string; scheduledTime: number },
  warmables: readonly Warmable<unknown>[],
  options: ScheduledOptions,
  budget: Budget,
  outbox: Pick<ScheduledReport, "sweep" | "drain" | "lag">,
): Promise<ScheduledReport> {
  const { drain, lag } = outbox;
  let warm: ScheduledReport["warm"];
  try {
    warm = await warmHotKeys(services, warmables, options.warm, budget);
    console.log(describeWarm(warm));
  } catch (error) {
    warm = { error: describeError(error) };
    console.error(`warm failed: ${warm.error}`);
  }

  const report: ScheduledReport = {
    cron: tick.cron,
    scheduledTime: tick.scheduledTime,
    ...outbox,
    warm,
    subrequests: budget.used,
  };
  try {
    await recordHeartbeat(services.redis, services.config.CACHE_PREFIX, "warm", { ...report });
  } catch (error) {
    console.warn(`warm: heartbeat not recorded: ${describeError(error)}`);
  }
  console.log(
    `tick "${tick.cron}" at ${new Date(tick.scheduledTime).toISOString()}: ` +
      ("pending" in drain
        ? `drain ${drain.pending} pending, ${drain.applied} applied, ${drain.queued} queued, ${drain.parked} parked in ${drain.rounds} rounds (${drain.stoppedBy})`
        : "skipped" in drain
          ? `outbox not read (${drain.skipped})`
          : `drain failed (${drain.error})`) +
      (lag
        ? `; outbox lag ${lag.pending} rows (${lag.stuck} parked), oldest ${lag.oldestAgeMs ?? 0} ms, ${lag.pruned} applied rows deleted`
        : "skipped" in drain
          ? ""
          : "; outbox lag unknown") +
      `; ${budget.used}/${budget.limit} subrequests; hot-key windows expire on their own`,
  );
  return report;
}
