import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import {
  MAX_OUTBOX_ATTEMPTS,
  type PendingEvent,
  pendingEvents,
  QUEUED_GRACE_S,
  recordOutage,
  recordRowFailures,
} from "../domain/outbox";
import { isRedisReplyError } from "../redis/errors";
import type { Services } from "../runtime/services";
import {
  checkEvent,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  fitting,
  type PatternLimits,
  sendEvents,
  sendsOf,
  settleCost,
} from "./apply-event";
import { Budget } from "./budget";
import { type SettleItem, settleEvents } from "./settle";

/**
 * The outbox drain: applies what writers left behind (a Worker killed after commit, Redis down
 * at write time), for this deployment's prefix only, through the shared settle path.
 *
 * It walks pending rows oldest first in rounds (keyset by id, so a round never sees a row an
 * earlier round of the same drain saw) and loops while its budget lasts: subrequests (each
 * round is at least a SELECT, one apply and one UPDATE) and wall time. Rows it cannot apply:
 * - malformed rows get an attempt recorded; at MAX_OUTBOX_ATTEMPTS they are parked (drains
 *   stop selecting them) and until then the keyset walks past them, so they never block rows
 *   behind them; rows of a newer release (fields this release does not know) are walked past
 *   without a charge for NEWER_RELEASE_GRACE_S: that release applies them;
 * - when an apply fails, the error tells an outage from a bad row. Redis did not answer (a
 *   network failure, a timeout, an HTTP 5xx, a refused token): the rows go to the queue, keep
 *   their attempts (an outage of any length parks nothing), and the drain stops. Redis answered
 *   with an error (`ERR …`, `WRONGTYPE …`): the batch is halved until the failing rows are
 *   alone, and only they get an attempt. Decided on every failed apply, halves included: a
 *   PING once per drain let an outage that began after it charge, and in the end park, good
 *   rows.
 */

export interface DrainOptions {
  /** Only rows older than this: younger ones may still be in their writer's hands. Default 30 s; 0 takes every committed row. */
  olderThanMs?: number;
  /** Rows per round (one SELECT, one apply, one UPDATE). Default 1000. */
  batch?: number;
  /** Rows per drain at most. Default unlimited (the budgets decide). */
  limit?: number;
  /**
   * Wall time the drain may start new rounds, halvings and pattern steps in. Default 15 s. What
   * is under way finishes, each statement within its own deadline.
   */
  timeBudgetMs?: number;
  /** Subrequests to leave in the budget for whoever runs after the drain. Default 0. */
  reserve?: number;
  patterns?: Partial<PatternLimits>;
}

/**
 * Why a drain ended. "busy": a recovery drain found another isolate's drain of the prefix
 * running (recovery.ts, drain lock) and drained nothing.
 */
export type DrainStop = "caught-up" | "subrequests" | "time" | "limit" | "redis-down" | "busy";

export interface DrainReport {
  /** Rows selected (pending, not parked, of this prefix). */
  pending: number;
  /** Rows applied and marked processed. */
  applied: number;
  /** Rows whose event is malformed (attempt recorded). */
  invalid: number;
  /**
   * Rows whose event a newer release wrote (fields this release does not know): left to that
   * release, no attempt charged, for NEWER_RELEASE_GRACE_S.
   */
  newer: number;
  /** Rows that failed on their own (malformed or refused by Redis) and reached the parking limit. */
  parked: number;
  /** Rows handed to the queue because Redis failed (the consumer settles them). */
  queued: number;
  /** Continuation messages for unfinished pattern purges. */
  patternsContinued: number;
  rounds: number;
  /** Why the drain ended; "caught-up" means no pending row was left behind. */
  stoppedBy: DrainStop;
  redisRequests: number;
  queries: number;
  elapsedMs: number;
  error?: string;
}

const outboxChangeSchema = invalidationEventSchema.partial({ origin: true, at: true });

/**
 * How long drains leave a row of a newer release (its event has fields this release does not
 * know) to that release without charging it: a deploy runs two releases side by side for
 * minutes to hours, and this release's cron ticks meanwhile used to charge such a row an
 * attempt each, parking it after ten (50 min) for a person to retry. Past this (a release
 * rolled back for good), it is charged like any malformed row and parked in the end.
 */
export const NEWER_RELEASE_GRACE_S = 24 * 3600;

/**
 * Why a drain could not apply `event` as an outbox row's event (it would charge attempts until
 * the row is parked), or undefined when it could.
 */
export function outboxEventProblems(event: unknown): string | undefined {
  const checked = checkEvent(outboxChangeSchema, event, "event");
  return checked.ok ? undefined : checked.problems;
}

/** A pending row as the settle path takes it. */
function rowItem(row: PendingEvent): SettleItem {
  return {
    change: row.change,
    origin: row.change.origin ?? "outbox",
    at: row.createdAt.getTime(),
    outboxIds: [row.id],
  };
}

/** The queue message that re-delivers an outbox row (the consumer marks the row when applied). */
function rowEvent(row: PendingEvent): InvalidationEvent {
  const { origin: _stored, ...change } = row.change;
  const { origin, at } = rowItem(row);
  return { ...change, origin, at, outboxIds: [row.id] };
}

/** A drain that has done nothing yet (and, until it finds rows, has caught up). */
export function emptyDrainReport(stoppedBy: DrainStop = "caught-up"): DrainReport {
  return {
    pending: 0,
    applied: 0,
    invalid: 0,
    newer: 0,
    parked: 0,
    queued: 0,
    patternsContinued: 0,
    rounds: 0,
    stoppedBy,
    redisRequests: 0,
    queries: 0,
    elapsedMs: 0,
  };
}

/** What settling these rows spends besides its pattern steps (settleCost). */
const rowsCost = (rows: readonly PendingEvent[]) => settleCost(rows.map((r) => r.change));

/** Cheapest round: SELECT + apply + UPDATE. */
const ROUND_COST = 3;

/**
 * Drains this prefix's outbox within `budget` (see the module comment). Idempotent like the
 * consumer: applying a row twice changes nothing.
 *
 * @example
 * const report = await drainOutbox(services, { olderThanMs: 30_000 }, new Budget(40));
 * report.applied; report.stoppedBy; // "caught-up" | "subrequests" | "time" | …
 */
export async function drainOutbox(
  services: Services,
  options: DrainOptions = {},
  budget = new Budget(Number.POSITIVE_INFINITY),
): Promise<DrainReport> {
  const started = Date.now();
  const report = emptyDrainReport();
  const prefix = services.config.CACHE_PREFIX;
  const batch = Math.max(1, options.batch ?? 1000);
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const deadline = started + (options.timeBudgetMs ?? 15_000);
  const reserve = options.reserve ?? 0;
  const limits = { ...DEFAULT_PATTERN_LIMITS, ...options.patterns };
  const spare = () => budget.left - reserve;
  const spendQuery = () => {
    budget.spend(1);
    report.queries++;
  };
  const noteError = (error: string) => {
    report.error ??= error;
  };
  let redisDown = false;

  /** Attempts of rows that failed on their own, each with its reason; parks those reaching the limit. */
  const failOnTheirOwn = async (failures: readonly { row: PendingEvent; error: string }[]) => {
    spendQuery();
    try {
      await recordRowFailures(
        services.db,
        prefix,
        failures.map((f) => ({ id: f.row.id, error: f.error })),
      );
      report.parked += failures.filter((f) => f.row.attempts + 1 >= MAX_OUTBOX_ATTEMPTS).length;
    } catch (e) {
      noteError(`attempts not recorded: ${describeError(e)}`);
    }
  };

  /** Redis is down: the rows keep their attempts and go to the queue, if it takes them. */
  const handOver = async (rows: readonly PendingEvent[], error: string) => {
    const ids = rows.map((r) => r.id);
    // Rows an earlier drain of this outage handed over are the queue's for now (QUEUED_GRACE_S).
    const toSend = rows.filter((r) => !r.queuedRecently);
    const queued = new Set<number>();
    if (toSend.length > 0) {
      try {
        budget.spend(
          await sendEvents(services.queue, toSend.map(rowEvent), services.config.QUEUE_TIMEOUT_MS),
        );
        for (const row of toSend) queued.add(row.id);
        report.queued += toSend.length;
      } catch (queueError) {
        budget.spend(sendsOf(queueError));
        noteError(
          `${error}; queue send failed too, ${toSend.length} rows stay pending: ${describeError(queueError)}`,
        );
      }
    }
    spendQuery();
    await recordOutage(services.db, prefix, ids, error, queued).catch((e: unknown) =>
      noteError(`outage not recorded: ${describeError(e)}`),
    );
    const waiting = rows.length - toSend.length;
    if (queued.size > 0 || waiting > 0) {
      noteError(
        `${error}; ${queued.size} rows handed to the queue` +
          (waiting > 0
            ? `, ${waiting} already with it (handed over in the last ${QUEUED_GRACE_S} s)`
            : ""),
      );
    }
  };

  /** Applies and settles `rows`; on a failed apply tells an outage from bad rows (halving). */
  const settle = async (rows: readonly PendingEvent[]): Promise<void> => {
    if (rows.length === 0 || redisDown) return;
    // Pattern steps get what is left after the rest of the settle: the apply, a continuation
    // send, markContinued and markProcessed (4; it kept 2, and a round could spend 2–3 of the
    // warmer's reserve), and none past the deadline (an unfinished purge continues on the
    // queue, or the row stays pending).
    const steps =
      Date.now() >= deadline ? 0 : Math.max(0, Math.min(limits.steps, spare() - rowsCost(rows)));
    const result = await settleEvents(services, rows.map(rowItem), { ...limits, steps });
    budget.spend(result.redisRequests + result.queries + result.queueSends);
    report.redisRequests += result.redisRequests;
    report.queries += result.queries;
    if (result.applied) {
      report.applied += result.marked;
      report.patternsContinued += result.continuations;
      if (result.error) noteError(result.error);
      return;
    }
    const error = `apply failed: ${result.applyError ?? "unknown error"}`;
    if (!isRedisReplyError(result.applyCause)) redisDown = true;
    if (redisDown) {
      await handOver(rows, error);
      return;
    }
    if (rows.length === 1) {
      await failOnTheirOwn(rows.map((row) => ({ row, error })));
      return;
    }
    // Redis answers but refuses this batch: find the rows it refuses by halving.
    const half = Math.ceil(rows.length / 2);
    for (const part of [rows.slice(0, half), rows.slice(half)]) {
      if (spare() < rowsCost(part)) {
        noteError(`${error}; subrequests ran out while isolating the failing rows`);
        return;
      }
      // Halving is bounded by the deadline too: a recovery drain runs in `waitUntil`, which the
      // runtime cuts 30 s after the response, and each half is up to an apply and two marks.
      if (Date.now() >= deadline) {
        noteError(`${error}; time ran out while isolating the failing rows`);
        return;
      }
      await settle(part);
    }
  };

  let afterId = 0;
  for (;;) {
    if (report.pending >= limit) {
      report.stoppedBy = "limit";
      break;
    }
    if (spare() < ROUND_COST) {
      report.stoppedBy = "subrequests";
      break;
    }
    if (report.rounds > 0 && Date.now() >= deadline) {
      report.stoppedBy = "time";
      break;
    }
    spendQuery();
    report.rounds++;
    const size = Math.min(batch, limit - report.pending);
    const rows = await pendingEvents(services.db, {
      prefix,
      olderThanMs: options.olderThanMs ?? 30_000,
      limit: size,
      afterId,
    });
    // The round's apply takes a request per APPLY_CHUNK names (rows of admin purges hold up to
    // 2,000): only the oldest rows whose settle fits the budget go; the rest wait for the next
    // round or drain, where they come first.
    const selected = rows.length;
    rows.splice(
      fitting(
        rows.map((r) => r.change),
        spare(),
      ),
    );
    report.pending += rows.length;
    const last = rows.at(-1);
    if (!last) {
      if (selected > 0) report.stoppedBy = "subrequests";
      break;
    }
    afterId = last.id;

    const valid: PendingEvent[] = [];
    const invalid: { row: PendingEvent; problems: string }[] = [];
    const newer: { row: PendingEvent; fields: string[] }[] = [];
    const newerSince = Date.now() - NEWER_RELEASE_GRACE_S * 1000;
    for (const row of rows) {
      const checked = checkEvent(outboxChangeSchema, row.change, "event");
      if (checked.ok) valid.push(row);
      else if (checked.newer && row.createdAt.getTime() > newerSince) {
        newer.push({ row, fields: checked.newer.fields });
      } else if (checked.newer) {
        invalid.push({
          row,
          problems: `an event of a newer release (fields ${checked.newer.fields.join(", ")}) that no release applied for ${NEWER_RELEASE_GRACE_S / 3600} h (rolled back?): ${checked.problems}`,
        });
      } else invalid.push({ row, problems: checked.problems });
    }
    if (newer.length > 0) {
      report.newer += newer.length;
      console.warn(
        `drain: ${newer.length} outbox rows of a newer release left to it (no attempt charged): ${newer
          .slice(0, 5)
          .map((n) => `#${n.row.id} (${n.fields.join(", ")})`)
          .join(" | ")}`,
      );
    }
    if (invalid.length > 0) {
      report.invalid += invalid.length;
      console.error(
        `drain: ${invalid.length} malformed outbox rows (attempt recorded, parked after ${MAX_OUTBOX_ATTEMPTS}): ${invalid
          .slice(0, 5)
          .map((i) => `#${i.row.id} ${i.problems}`)
          .join(" | ")}`,
      );
      await failOnTheirOwn(
        invalid.map((i) => ({ row: i.row, error: `invalid event: ${i.problems}` })),
      );
    }
    await settle(valid);
    if (redisDown) {
      report.stoppedBy = "redis-down";
      break;
    }
    if (rows.length < selected) {
      report.stoppedBy = "subrequests";
      break;
    }
    if (rows.length < size) break;
  }
  report.elapsedMs = Date.now() - started;
  if (report.error) console.warn(`drain: ${report.error}`);
  return report;
}
