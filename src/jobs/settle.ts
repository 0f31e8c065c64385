import type { InvalidationEvent } from "../domain/events";
import { markContinued, markProcessed } from "../domain/outbox";
import type { Services } from "../runtime/services";
import {
  type ApplyOutcome,
  applyChange,
  type ChangeWithCursor,
  describeError,
  jsonBytes,
  MESSAGE_MAX_BYTES,
  mergeChanges,
  notStarted,
  type PatternLimits,
  type PatternOutcome,
  type PatternRun,
  runPatternJobs,
  sendEvents,
  sendsOf,
} from "./apply-event";

/**
 * The one settle path of the queue consumer and the outbox drain: apply a set of events to the
 * cache and mark their outbox rows, so both agree on when a row is done.
 *
 * 1. The events are merged and their keys, tags and versions applied in ONE request.
 * 2. Pattern purges run in bounded steps. An event whose purges the steps do not finish gets
 *    ONE continuation message holding all of its unfinished purges with their cursors
 *    (`cursors`) and its outbox ids: its rows are settled when the last purge ends, never when
 *    the first of several does. Events left with the same purges share one continuation (one
 *    per 1,000 rows). Purges too long for one message are split, without their rows
 *    (`splitPurges`). Every send is within the queue's limits and QUEUE_TIMEOUT_MS.
 * 3. The outbox rows of the events that are done are marked processed (under the services'
 *    prefix only). A row also named by an event that is continued or failed is not marked.
 */

/** One event to settle, with the outbox rows it settles. */
export interface SettleItem {
  change: ChangeWithCursor;
  origin: string;
  /** When the event was first written (ms): continuations keep the oldest. */
  at: number;
  outboxIds: readonly number[];
}

/**
 * done: applied, purges finished, rows marked (best effort);
 * continued: applied, its unfinished purges are on the queue with its rows (or, split over
 *   several messages, without them: then its rows are marked processed now);
 * failed: not applied (Redis failed) or a purge step failed or its continuation could not be
 * queued; nothing of it was marked, and it must be delivered again.
 */
export type SettleStatus = "done" | "continued" | "failed";

export interface SettleResult {
  status: SettleStatus[];
  /** Undefined when the apply failed (then every status is "failed"). */
  applied?: ApplyOutcome;
  /** Why the apply failed (the Redis error). */
  applyError?: string;
  /** The underlying error of the failed apply, for callers that classify it. */
  applyCause?: unknown;
  patterns: PatternRun;
  /** Continuation messages sent. */
  continuations: number;
  /** Outbox rows marked processed. */
  marked: number;
  /** Requests spent: Redis (apply + purge steps), SQL (the mark), queue sends. */
  redisRequests: number;
  queries: number;
  queueSends: number;
  /** The first problem after the apply (a purge step, a queue send, the mark). */
  error?: string;
}

/** The most outbox ids one event may carry (`outboxIds` in the event schema). */
const OUTBOX_IDS_MAX = 1000;

/** The continuation messages of a settle, and which items they continue. */
interface Continuations {
  events: InvalidationEvent[];
  /** Items whose rows travel with their purges: marked continued, settled by the chain. */
  chained: number[];
  /** Items whose purges were split without their rows (see `splitPurges`): settled now. */
  handedOff: number[];
}

/**
 * One message for each distinct set of unfinished purges, carrying its events' rows in runs of
 * at most OUTBOX_IDS_MAX (one message per run, all with the same purges: each row is settled by
 * the chain that carries it, so every row markContinued records has a chain; the consumer merges
 * the same purges delivered together). A set whose message would pass the queue's per-message
 * limit is split instead (`splitPurges`).
 */
function continuations(
  items: readonly SettleItem[],
  owned: readonly PatternOutcome[][],
  need: readonly number[],
): Continuations {
  const bySignature = new Map<string, { outcomes: PatternOutcome[]; members: number[] }>();
  for (const index of need) {
    const open = (owned[index] ?? []).filter((o) => !o.done);
    const signature = open.map((o) => `${o.glob}\u0000${o.cursor}`).join("\u0001");
    const group = bySignature.get(signature) ?? { outcomes: open, members: [] };
    group.members.push(index);
    bySignature.set(signature, group);
  }
  const plan: Continuations = { events: [], chained: [], handedOff: [] };
  for (const { outcomes, members } of bySignature.values()) {
    const rows = [...new Set(members.flatMap((i) => items[i]?.outboxIds ?? []))];
    const first = items[members[0] ?? 0];
    const purges: InvalidationEvent = {
      patterns: outcomes.map((o) => o.glob),
      cursors: Object.fromEntries(outcomes.map((o) => [o.glob, o.cursor])),
      origin: first?.origin ?? "purge",
      at: Math.min(...members.map((i) => items[i]?.at ?? Date.now())),
    };
    const runs: InvalidationEvent[] = [];
    for (let start = 0; start < rows.length; start += OUTBOX_IDS_MAX) {
      runs.push({ ...purges, outboxIds: rows.slice(start, start + OUTBOX_IDS_MAX) });
    }
    if (runs.length === 0) runs.push(purges);
    if (runs.every((event) => jsonBytes(event) <= MESSAGE_MAX_BYTES)) {
      plan.events.push(...runs);
      plan.chained.push(...members);
    } else {
      plan.events.push(...splitPurges(purges));
      plan.handedOff.push(...members);
    }
  }
  return plan;
}

/**
 * `event`'s purges over as many messages as the per-message limit needs, none carrying outbox
 * ids. Only purges of long globs get here (a continuation repeats each glob in `cursors`, so an
 * admin message of 100 long globs continues as about twice its size); writers' events never do.
 *
 * Why without the rows: a row may be settled only when its LAST purge ends, and parts of one
 * purge set finish in any order, which would take a per-row count of open parts. Instead, once
 * every part is on the queue the rows are marked processed: from then on the purges are the
 * queue's to deliver, as an admin purge always is (a part that fails for good is kept in the
 * dead-letter queue). Not splitting was worse: the whole send failed, so the message was retried
 * from the same cursors until it was dead-lettered, and the purges never progressed.
 */
function splitPurges(event: InvalidationEvent): InvalidationEvent[] {
  const empty = (): InvalidationEvent => ({ ...event, patterns: [], cursors: {} });
  const parts: InvalidationEvent[] = [];
  let part = empty();
  let bytes = jsonBytes(part);
  for (const glob of event.patterns ?? []) {
    const cursor = event.cursors?.[glob] ?? "0";
    // The glob twice (in `patterns` and as a key of `cursors`), its cursor, two commas, a colon.
    const cost = 2 * jsonBytes(glob) + jsonBytes(cursor) + 3;
    if ((part.patterns?.length ?? 0) > 0 && bytes + cost > MESSAGE_MAX_BYTES) {
      parts.push(part);
      part = empty();
      bytes = jsonBytes(part);
    }
    part.patterns?.push(glob);
    if (part.cursors) part.cursors[glob] = cursor;
    bytes += cost;
  }
  if ((part.patterns?.length ?? 0) > 0) parts.push(part);
  return parts;
}

/**
 * Applies `items` and settles their outbox rows (see the module comment). Never throws for a
 * Redis, queue or Postgres failure: the per-item status says what must be delivered again.
 *
 * @example
 * const result = await settleEvents(services, rows.map((r) => ({
 *   change: r.change, origin: "outbox", at: r.createdAt.getTime(), outboxIds: [r.id],
 * })), { steps: 5, stepBudget: 1000 });
 * result.status; // ["done", "continued", …]
 */
export async function settleEvents(
  services: Services,
  items: readonly SettleItem[],
  limits: PatternLimits,
): Promise<SettleResult> {
  const result: SettleResult = {
    status: items.map(() => "failed"),
    patterns: { outcomes: [], steps: 0, deleted: 0 },
    continuations: 0,
    marked: 0,
    redisRequests: 0,
    queries: 0,
    queueSends: 0,
  };
  if (items.length === 0) return result;
  const merged = mergeChanges(items.map((i) => i.change));
  const spent = { requests: 0 };
  try {
    result.applied = await applyChange(services.cache, merged.change, spent);
    result.redisRequests += spent.requests;
  } catch (error) {
    // Every chunk sent counts, the refused one included (a refusal after k chunks spent k).
    result.redisRequests += spent.requests;
    result.applyError = describeError(error);
    result.applyCause = error;
    return result;
  }

  const run: PatternRun =
    limits.steps > 0
      ? await runPatternJobs(services.cache, merged.patterns, limits)
      : {
          // No steps left: every purge is continued from where it stands.
          outcomes: merged.patterns.map(notStarted),
          steps: 0,
          deleted: 0,
        };
  result.patterns = run;
  result.redisRequests += run.steps;
  for (const o of run.outcomes) {
    if (o.error) result.error ??= `purge of ${o.glob} failed: ${o.error}`;
  }

  const owned = items.map((_, index) => run.outcomes.filter((o) => o.owners.includes(index)));
  const need: number[] = [];
  owned.forEach((mine, index) => {
    if (mine.some((o) => o.error)) result.status[index] = "failed";
    else if (mine.some((o) => !o.done)) need.push(index);
    else result.status[index] = "done";
  });

  let handedOff = new Set<number>();
  if (need.length > 0) {
    const plan = continuations(items, owned, need);
    let queued = false;
    try {
      result.queueSends += await sendEvents(
        services.queue,
        plan.events,
        services.config.QUEUE_TIMEOUT_MS,
      );
      result.continuations = plan.events.length;
      for (const i of need) result.status[i] = "continued";
      handedOff = new Set(plan.handedOff);
      queued = true;
    } catch (error) {
      result.queueSends += sendsOf(error); // each call a subrequest, the failed one included
      // Without its continuation the event must be delivered again: its redelivery (or the
      // next drain) resumes from its own cursors.
      result.error ??= `continuation of ${plan.events.length} purges not queued: ${describeError(error)}`;
    }
    const continued = queued
      ? [...new Set(plan.chained.flatMap((i) => items[i]?.outboxIds ?? []))]
      : [];
    if (continued.length > 0) {
      // Drains leave these rows to the chain just queued (outbox.ts, markContinued). Not
      // recorded: a drain may start a second chain, which changes nothing but the work.
      result.queries++;
      await markContinued(services.db, services.config.CACHE_PREFIX, continued).catch(
        (error: unknown) => {
          result.error ??= `continuation not recorded on its outbox rows: ${describeError(error)}`;
        },
      );
    }
  }

  // Rows are settled when their event is done, or continued without them (splitPurges), and no
  // other event naming them is still open.
  const settled = (i: number) => result.status[i] === "done" || handedOff.has(i);
  const notDone = new Set(items.flatMap((item, i) => (settled(i) ? [] : item.outboxIds)));
  const ids = [...new Set(items.flatMap((item, i) => (settled(i) ? item.outboxIds : [])))].filter(
    (id) => !notDone.has(id),
  );
  if (ids.length > 0) {
    result.queries++;
    try {
      await markProcessed(services.db, services.config.CACHE_PREFIX, ids);
      result.marked = ids.length;
    } catch (error) {
      // Applied but not marked: the next drain applies them again, which changes nothing.
      result.error ??= `applied but ${ids.length} outbox rows not marked: ${describeError(error)}`;
    }
  }
  return result;
}
