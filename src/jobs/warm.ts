import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import {
  markProcessed,
  outboxLag,
  type PendingEvent,
  pendingEvents,
  recordAttempt,
} from "../domain/outbox";
import type { Warmable } from "../domain/warmable";
import type { Services } from "../runtime/services";
import {
  applyChange,
  continuationEvent,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  mergeChanges,
  nameProblems,
  type PatternLimits,
  runPatternJobs,
  sendEvents,
} from "./apply-event";
import { recordHeartbeat } from "./heartbeat";

/**
 * The cron tick: drain the outbox, then warm the hottest keys, within one subrequest budget.
 *
 * Hot-key windows need no work here: each window is a sorted set with a TTL of
 * (windows + 1) × window length set by the read script, and `hotKeys` merges the recent ones
 * with decaying weights, so old windows roll off by themselves.
 */

/**
 * Counts subrequests (Redis requests + SQL queries + queue sends) against a limit. Workers cap
 * subrequests per invocation (50 on the free plan), and a tick must leave room for the rest.
 */
export class Budget {
  used = 0;
  constructor(readonly limit: number) {}
  get left(): number {
    return Math.max(0, this.limit - this.used);
  }
  /** Takes `n` if available; false (taking nothing) otherwise. */
  take(n = 1): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  /** Records subrequests that were spent whether or not there was room. */
  spend(n: number): void {
    this.used += n;
  }
}

// ---------------------------------------------------------------- outbox drain

export interface DrainOptions {
  /** Only rows older than this: younger ones may still be in their writer's hands. Default 30 s. */
  olderThanMs?: number;
  /** Rows per tick. Default 500. */
  limit?: number;
  patterns?: Partial<PatternLimits>;
}

export interface DrainReport {
  /** Pending rows found. */
  pending: number;
  /** Rows applied and marked processed. */
  applied: number;
  /** Rows whose event is malformed (attempt recorded, left pending for a person). */
  invalid: number;
  /** Rows handed to the queue because Redis failed (the consumer settles them). */
  queued: number;
  /** Pattern purges handed to the queue with their cursor. */
  patternsContinued: number;
  redisRequests: number;
  queries: number;
  error?: string;
}

const outboxChangeSchema = invalidationEventSchema.partial({ origin: true, at: true });

/** The queue message that re-delivers an outbox row (the consumer marks the row when applied). */
function rowEvent(row: PendingEvent): InvalidationEvent {
  const { origin, ...change } = row.change;
  return {
    ...change,
    origin: origin ?? "outbox",
    at: row.createdAt.getTime(),
    outboxIds: [row.id],
  };
}

/**
 * Applies what writers left behind (a Worker killed after commit, Redis down at write time):
 * pending rows → merged → ONE `cache.apply` (+ bounded pattern steps, the rest to the queue)
 * → marked processed. If Redis fails, the attempt is recorded and the rows go to the queue;
 * if that fails too they stay pending for the next tick. Idempotent like the consumer.
 */
export async function drainOutbox(
  services: Services,
  options: DrainOptions = {},
  budget = new Budget(Number.POSITIVE_INFINITY),
): Promise<DrainReport> {
  const report: DrainReport = {
    pending: 0,
    applied: 0,
    invalid: 0,
    queued: 0,
    patternsContinued: 0,
    redisRequests: 0,
    queries: 0,
  };
  const { db, cache } = services;
  // The drain always runs (it is what makes invalidation reliable): it records what it spends
  // and only its pattern steps are limited by what is left.
  budget.spend(1);
  report.queries++;
  const rows = await pendingEvents(db, {
    olderThanMs: options.olderThanMs ?? 30_000,
    limit: options.limit ?? 500,
  });
  report.pending = rows.length;
  if (rows.length === 0) return report;

  const valid: PendingEvent[] = [];
  const invalid: { row: PendingEvent; problems: string }[] = [];
  for (const row of rows) {
    const parsed = outboxChangeSchema.safeParse(row.change);
    const problems = parsed.success
      ? nameProblems(parsed.data)
      : parsed.error.issues.map((i) => `${i.path.join(".") || "event"}: ${i.message}`);
    if (problems.length === 0) valid.push(row);
    else invalid.push({ row, problems: problems.join("; ") });
  }
  if (invalid.length > 0) {
    report.invalid = invalid.length;
    console.error(
      `drain: ${invalid.length} malformed outbox rows left pending: ${invalid
        .slice(0, 5)
        .map((i) => `#${i.row.id} ${i.problems}`)
        .join(" | ")}`,
    );
    budget.spend(1);
    report.queries++;
    await recordAttempt(
      db,
      invalid.map((i) => i.row.id),
      `invalid event: ${invalid[0]?.problems ?? ""}`,
    ).catch((error: unknown) => console.warn(`drain: recordAttempt: ${describeError(error)}`));
  }
  if (valid.length === 0) return report;

  const merged = mergeChanges(valid.map((r) => r.change));
  try {
    const outcome = await applyChange(cache, merged.change);
    report.redisRequests += outcome.requests;
    budget.spend(outcome.requests);
  } catch (error) {
    report.redisRequests++;
    budget.spend(1);
    report.error = `apply failed: ${describeError(error)}`;
    const ids = valid.map((r) => r.id);
    report.queries++;
    budget.spend(1);
    await recordAttempt(db, ids, report.error).catch((e: unknown) =>
      console.warn(`drain: recordAttempt: ${describeError(e)}`),
    );
    try {
      budget.spend(await sendEvents(services.queue, valid.map(rowEvent)));
      report.queued = valid.length;
    } catch (queueError) {
      report.error += `; queue send failed too, ${ids.length} rows stay pending: ${describeError(queueError)}`;
    }
    console.error(`drain: ${report.error}`);
    return report;
  }

  const limits = { ...DEFAULT_PATTERN_LIMITS, ...options.patterns };
  const steps = Math.min(limits.steps, budget.left);
  const run = await runPatternJobs(cache, merged.patterns, { ...limits, steps });
  budget.spend(run.steps);
  report.redisRequests += run.steps;
  const unfinished = run.outcomes.filter((o) => !o.done && !o.error);
  const pendingRows = new Set<number>();
  for (const o of run.outcomes.filter((x) => x.error)) {
    for (const i of o.owners) pendingRows.add(i);
    report.error ??= `purge of ${o.glob} failed: ${o.error}`;
  }
  if (unfinished.length > 0) {
    const events = unfinished.map((o) => {
      const owners = o.owners.map((i) => valid[i]).filter((r) => r !== undefined);
      return continuationEvent(
        o,
        owners[0]?.change.origin ?? "outbox",
        Math.min(...owners.map((r) => r.createdAt.getTime())),
        owners.map((r) => r.id),
      );
    });
    try {
      budget.spend(await sendEvents(services.queue, events));
      report.patternsContinued = unfinished.length;
    } catch (error) {
      report.error ??= `purge continuation not queued: ${describeError(error)}`;
    }
    // Either way these rows are not done: the consumer marks them when the purge finishes,
    // or the next tick starts it again.
    for (const o of unfinished) for (const i of o.owners) pendingRows.add(i);
  }

  const done = valid.filter((_, i) => !pendingRows.has(i)).map((r) => r.id);
  if (done.length > 0) {
    report.queries++;
    budget.spend(1);
    try {
      await markProcessed(db, done);
      report.applied = done.length;
    } catch (error) {
      // Applied but not marked: the next tick applies them again, which changes nothing.
      report.error ??= `applied but not marked: ${describeError(error)}`;
    }
  }
  if (report.error) console.warn(`drain: ${report.error}`);
  return report;
}

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
  /** Hot keys missing or within `refreshWithinMs` of expiry. */
  stale: number;
  missing: number;
  /** Stale/missing keys no warmable claims (lists, sessions…): left to the read path. */
  unmatched: number;
  reloaded: number;
  byEntity: Record<string, number>;
  /** Rows no longer in Postgres (deleted): nothing to write. */
  notFound: number;
  /** Writes refused by the cache (a newer version or tag bump arrived meanwhile). */
  refused: number;
  /** Keys left for a later run because the budget ran out. */
  skipped: number;
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
 * `writeThrough`, issued together so the Upstash client auto-pipelines them into one request.
 * The writes carry `tagsAsOf` = the Redis time read before loading and the row's version, so a
 * write or tag bump that lands while the warmer loads always wins over the warmer.
 */
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
  budget.take(1);
  report.redisRequests++;
  const { now, fresh } = await cache.freshness(hot.map((h) => h.key));

  const groups = new Map<Warmable<unknown>, Group>();
  for (const { key } of hot) {
    const left = fresh.get(key) ?? null;
    if (left !== null && left >= within) continue;
    report.stale++;
    if (left === null) report.missing++;
    let claimed = false;
    for (const warmable of warmables) {
      const id = warmable.parse(key);
      if (id === null) continue;
      const group = groups.get(warmable) ?? { warmable, ids: new Map<number, string>() };
      groups.set(warmable, group);
      group.ids.set(id, key);
      claimed = true;
      break;
    }
    if (!claimed) report.unmatched++;
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

  const loaded = await Promise.all(
    chosen.map(async (group) => {
      try {
        return { group, rows: await group.warmable.loadMany(db, [...group.ids.keys()]) };
      } catch (error) {
        report.errors.push(`${group.warmable.entity} loadMany: ${describeError(error)}`);
        return { group, rows: new Map<number, unknown>() };
      } finally {
        report.queries++;
      }
    }),
  );

  const writes: Promise<void>[] = [];
  for (const { group, rows } of loaded) {
    for (const [id, key] of group.ids) {
      if (!rows.has(id)) {
        report.notFound++;
        continue;
      }
      const value = rows.get(id);
      const entity = group.warmable.entity;
      const entry = group.warmable.entry(value);
      const version = entry.versionOf ? entry.versionOf(value) : null;
      writes.push(
        cache
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
  // Issued in one go (no await in between): the client auto-pipelines them.
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
    (report.stoppedEarly ? `; stopped early: ${report.stoppedEarly}` : "") +
    (report.errors.length ? `; errors: ${report.errors.join(" | ")}` : "")
  );
}

// ---------------------------------------------------------------- the tick

export interface ScheduledOptions {
  drain?: DrainOptions;
  warm?: WarmOptions;
  /** Subrequests for the whole tick (drain + lag + warm + heartbeat). Default 40. */
  budget?: number;
}

export interface ScheduledReport {
  cron: string;
  scheduledTime: number;
  drain: DrainReport | { error: string };
  lag: { pending: number; oldestAgeMs: number | null } | null;
  warm: WarmReport | { error: string };
  subrequests: number;
}

/**
 * One cron tick. The drain runs first (correctness before speed), then the outbox lag is read
 * for the heartbeat, then the warmer gets what is left of the budget. A failing stage is
 * reported and does not stop the next one.
 */
export async function runScheduled(
  services: Services,
  tick: { cron: string; scheduledTime: number },
  warmables: readonly Warmable<unknown>[],
  options: ScheduledOptions = {},
): Promise<ScheduledReport> {
  const budget = new Budget(options.budget ?? options.warm?.budget ?? 40);
  // The lag query and the heartbeat come first in the accounting: they always run.
  budget.spend(2);

  let drain: ScheduledReport["drain"];
  try {
    drain = await drainOutbox(services, options.drain, budget);
  } catch (error) {
    drain = { error: describeError(error) };
    console.error(`drain failed: ${drain.error}`);
  }

  let lag: ScheduledReport["lag"] = null;
  try {
    lag = await outboxLag(services.db);
  } catch (error) {
    console.warn(`outbox lag unavailable: ${describeError(error)}`);
  }

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
    drain,
    lag,
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
        ? `drain ${drain.pending} pending, ${drain.applied} applied, ${drain.queued} queued`
        : `drain failed (${drain.error})`) +
      `; outbox lag ${lag ? `${lag.pending} rows, oldest ${lag.oldestAgeMs ?? 0} ms` : "unknown"}` +
      `; ${budget.used}/${budget.limit} subrequests; hot-key windows expire on their own`,
  );
  return report;
}
