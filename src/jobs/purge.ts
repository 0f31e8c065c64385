import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import { isRedisReplyError } from "../redis/errors";
import type { Services } from "../runtime/services";
import {
  checkEvent,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  fitting,
  mergeChanges,
  type PatternLimits,
  settleCost,
} from "./apply-event";
import { Budget } from "./budget";
import { recordHeartbeat } from "./heartbeat";
import { settleEvents } from "./settle";

export interface PurgeMessage {
  readonly id: string;
  readonly body: unknown;
  readonly attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

/** The channel the consumer publishes applied changes on (PUBLISH_EVENTS=1). */
export const eventsChannel = (prefix: string) => `${prefix}:events`;

/** One PUBLISH per batch: the merged change, so subscribers see what the edge just forgot. */
async function publishApplied(
  services: Services,
  change: ReturnType<typeof mergeChanges>["change"],
  messages: number,
): Promise<void> {
  const { keys, tags, versions } = change;
  await services.redis.publish(
    eventsChannel(services.config.CACHE_PREFIX),
    JSON.stringify({ keys, tags, versions, messages, origin: "purge", at: Date.now() }),
  );
}

/** Exponential backoff for a redelivery: 2 s, 4 s, 8 s … capped at a minute. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(60, 2 ** Math.max(1, attempts));
}

/**
 * wrangler.toml `max_retries`: past it Cloudflare moves the message to the dead-letter queue.
 * It counts retries, not deliveries: a message is delivered up to MAX_RETRIES + 1 times.
 */
export const MAX_RETRIES = 5;

export interface PurgeOptions {
  /** Pattern purge steps per batch and keys per step. Default 5 × 1000. */
  patterns?: Partial<PatternLimits>;
  /**
   * wrangler.toml `max_retries` (default MAX_RETRIES): a malformed message on its last delivery,
   * attempt maxRetries + 1, is logged as poison.
   */
  maxRetries?: number;
  /** Subrequests the batch may spend (default PURGE_SUBREQUESTS). */
  subrequests?: number;
}

/**
 * Subrequests one consumer invocation spends at most: Redis requests, SQL statements and queue
 * sends, the heartbeat included. Workers allow 50 per invocation on the free plan; the rest is
 * room for the Postgres connection and for continuation sends past the first, which a settle
 * counts only once made (more than one only for admin purges of hundreds of long globs).
 */
export const PURGE_SUBREQUESTS = 40;

export interface PurgeReport {
  queue: string;
  messages: number;
  acked: number;
  retried: number;
  /** Messages that are not invalidation events (retried toward the dead-letter queue). */
  invalid: number;
  /** Invalid messages, or ones Redis refuses on their own, on their last delivery: logged. */
  poison: number;
  /** Distinct names applied (after merging the batch) and what Redis did with them. */
  applied: {
    keys: number;
    tags: number;
    versions: number;
    removed: number;
    versionsAdvanced: number;
  };
  patterns: { steps: number; deleted: number; finished: number };
  /** Pattern purges handed back to the queue with their cursor. */
  patternsContinued: number;
  /** Outbox rows marked processed (best effort). */
  outboxMarked: number;
  /**
   * Subrequests spent (Redis requests, SQL statements, queue sends), the heartbeat included; the
   * engine's telemetry flush (at most one a second, kept back in the budget) is not.
   */
  subrequests: number;
  /** Why the batch (or part of it) was retried. */
  error?: string;
}

function emptyReport(queue: string, messages: number): PurgeReport {
  return {
    queue,
    messages,
    acked: 0,
    retried: 0,
    invalid: 0,
    poison: 0,
    applied: { keys: 0, tags: 0, versions: 0, removed: 0, versionsAdvanced: 0 },
    patterns: { steps: 0, deleted: 0, finished: 0 },
    patternsContinued: 0,
    outboxMarked: 0,
    subrequests: 0,
  };
}

/**
 * Consumes a batch of invalidation events:
 * - every message is validated; a malformed one is retried with backoff (never acked), so after
 *   max_retries it lands in the dead-letter queue for a person to read, and is logged as poison
 *   on its last delivery (attempt max_retries + 1);
 * - the valid ones are merged (keys and tags deduplicated, the highest version per name) and
 *   applied in ONE Redis request; if Redis is down, every message is retried: nothing is acked
 *   that was not applied. If Redis answers but refuses the merged change (a tag whose key holds
 *   another type: WRONGTYPE), the batch is halved until the messages it refuses are alone
 *   (while the subrequest budget lasts), the others are applied and acked, and only those
 *   are retried, logged as poison on their last delivery (one used to send its whole batch,
 *   unapplied and unlogged, to the dead-letter queue);
 * - everything it sends counts against one budget of subrequests (PURGE_SUBREQUESTS): pattern
 *   steps get what a settle and the heartbeat leave, and messages the budget cannot settle are
 *   retried, never lost to a "Too many subrequests" in the middle of the batch;
 * - pattern purges run in bounded steps; one the budget does not finish is re-enqueued with
 *   its cursor (carrying the outbox ids) and the original is acked;
 * - outbox rows of fully applied messages are marked processed, best effort (the cron drains
 *   whatever is left, and applying twice changes nothing: versions never move back, deletes
 *   of deleted keys are no-ops).
 */
export async function processPurgeBatch(
  services: Services,
  queue: string,
  messages: readonly PurgeMessage[],
  options: PurgeOptions = {},
): Promise<PurgeReport> {
  // `max_retries` counts retries: the first delivery plus that many, then the dead-letter queue.
  const lastAttempt = (options.maxRetries ?? MAX_RETRIES) + 1;
  const limits = { ...DEFAULT_PATTERN_LIMITS, ...options.patterns };
  const report = emptyReport(queue, messages.length);
  const retry = (message: PurgeMessage) => {
    message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    report.retried++;
  };

  const valid: { message: PurgeMessage; event: InvalidationEvent }[] = [];
  for (const message of messages) {
    const parsed = checkEvent(invalidationEventSchema, message.body, "body");
    if (parsed.ok) {
      valid.push({ message, event: parsed.event });
      continue;
    }
    report.invalid++;
    if (parsed.newer) {
      // Not applied in part: its release (serving beside this one during a deploy) may get a
      // delivery; after the last one the dead-letter consumer keeps it for that release.
      console.warn(
        `purge: message ${message.id} (attempt ${message.attempts} of ${lastAttempt}) is an event of a newer release (fields ${parsed.newer.fields.join(", ")}): retried for it`,
      );
    } else if (message.attempts >= lastAttempt) {
      report.poison++;
      logPoison(message, lastAttempt, parsed.problems);
    } else {
      console.warn(
        `purge: message ${message.id} (attempt ${message.attempts}) is not an invalidation event: ${parsed.problems}`,
      );
    }
    retry(message);
  }

  // Kept back from the start: the heartbeat, and the engine's telemetry flush (a background
  // request at most once a second, which a batch that applies anything may start).
  const budget = new Budget((options.subrequests ?? PURGE_SUBREQUESTS) - 2);
  if (valid.length > 0) {
    const isolation = { budget, lastAttempt, steps: limits.steps };
    await applyValid(services, valid, limits, report, retry, isolation);
  }

  report.subrequests = budget.used + 1;
  try {
    await recordHeartbeat(services.redis, services.config.CACHE_PREFIX, "purge", { ...report });
  } catch (error) {
    console.warn(`purge: heartbeat not recorded: ${describeError(error)}`);
  }
  console.log(
    `purge: ${queue} batch of ${messages.length}: ${report.acked} acked, ${report.retried} retried` +
      ` (${report.invalid} invalid, ${report.poison} poison); applied ${report.applied.keys} keys,` +
      ` ${report.applied.tags} tags, ${report.applied.versions} versions;` +
      ` ${report.patterns.steps} purge steps, ${report.patternsContinued} purges continued;` +
      ` ${report.subrequests} subrequests` +
      (report.error ? `; ${report.error}` : ""),
  );
  return report;
}

/** A message on its last delivery that will fail again: named before the dead-letter queue. */
function logPoison(message: PurgeMessage, lastAttempt: number, why: string): void {
  console.error(
    `purge: poison message ${message.id} (attempt ${message.attempts} of ${lastAttempt}, next stop the dead-letter queue): ${why}`,
  );
}

/** What the halves of one batch share: the budget, the pattern steps left, the last attempt. */
interface Isolation {
  budget: Budget;
  lastAttempt: number;
  steps: number;
}

async function applyValid(
  services: Services,
  batch: readonly { message: PurgeMessage; event: InvalidationEvent }[],
  limits: PatternLimits,
  report: PurgeReport,
  retry: (message: PurgeMessage) => void,
  isolation: Isolation,
): Promise<void> {
  let valid = batch;
  const { budget } = isolation;
  const publish = services.config.PUBLISH_EVENTS ? 1 : 0;
  // A settle's cost before its pattern steps (settleCost: an apply of admin purges of 1,000
  // keys and 1,000 tags takes several requests). What does not fit comes again; the longest
  // run from the front that fits goes now.
  const fit = fitting(
    valid.map((v) => v.event),
    budget.left,
    publish,
  );
  if (fit < valid.length) {
    report.error ??= `subrequests ran out: ${valid.length - fit} messages retried`;
    for (const { message } of valid.slice(fit)) retry(message);
    if (fit === 0) return;
    valid = valid.slice(0, fit);
  }
  const overhead = settleCost(
    valid.map((v) => v.event),
    publish,
  );
  const settled = await settleEvents(
    services,
    valid.map(({ event }) => ({
      change: event,
      origin: event.origin,
      at: event.at,
      outboxIds: event.outboxIds ?? [],
    })),
    {
      ...limits,
      steps: Math.max(0, Math.min(isolation.steps, budget.left - overhead)),
    },
  );
  budget.spend(settled.redisRequests + settled.queries + settled.queueSends);
  isolation.steps = Math.max(0, isolation.steps - settled.patterns.steps);
  if (!settled.applied) {
    const refused = isRedisReplyError(settled.applyCause);
    // Redis answered and refused: find the messages it refuses, apply the others.
    if (refused && valid.length > 1) {
      const half = Math.ceil(valid.length / 2);
      for (const part of [valid.slice(0, half), valid.slice(half)]) {
        await applyValid(services, part, limits, report, retry, isolation);
      }
      return;
    }
    const error = settled.applyError ?? "unknown error";
    report.error = `apply failed, ${valid.length === 1 ? "message" : "batch"} retried: ${error}`;
    console.error(`purge: ${report.error}`);
    for (const { message } of valid) {
      // A message Redis refuses on its own will be refused on every delivery: say so before
      // the dead-letter queue takes it.
      if (refused && valid.length === 1 && message.attempts >= isolation.lastAttempt) {
        report.poison++;
        logPoison(message, isolation.lastAttempt, `Redis refuses it: ${error}`);
      }
      retry(message);
    }
    return;
  }
  const outcome = settled.applied;
  report.applied.keys += outcome.keys;
  report.applied.tags += outcome.tags;
  report.applied.versions += outcome.versions;
  report.applied.removed += outcome.removed;
  report.applied.versionsAdvanced += outcome.versionsAdvanced;
  report.patterns.steps += settled.patterns.steps;
  report.patterns.deleted += settled.patterns.deleted;
  report.patterns.finished += settled.patterns.outcomes.filter((o) => o.done).length;
  report.patternsContinued += settled.continuations;
  report.outboxMarked += settled.marked;
  if (settled.error) {
    report.error = settled.error;
    console.warn(`purge: ${settled.error}`);
  }

  if (services.config.PUBLISH_EVENTS) {
    budget.spend(1);
    const merged = mergeChanges(valid.map((v) => v.event));
    await publishApplied(services, merged.change, valid.length).catch((error: unknown) => {
      // Subscribers are told best-effort; the cache itself is already consistent.
      console.warn(`purge: publish failed: ${describeError(error)}`);
    });
  }

  valid.forEach(({ message }, index) => {
    if (settled.status[index] === "failed") {
      retry(message);
      return;
    }
    message.ack();
    report.acked++;
  });
}
