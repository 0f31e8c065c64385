import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import { isRedisReplyError } from "../redis/errors";
import type { Services } from "../runtime/services";
import {
  checkEvent,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  mergeChanges,
  type PatternLimits,
} from "./apply-event";
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
}

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
 *   (at most ISOLATION_APPLIES more settles), the others are applied and acked, and only those
 *   are retried, logged as poison on their last delivery (one used to send its whole batch,
 *   unapplied and unlogged, to the dead-letter queue);
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
    if (message.attempts >= lastAttempt) {
      report.poison++;
      logPoison(message, lastAttempt, parsed.problems);
    } else {
      console.warn(
        `purge: message ${message.id} (attempt ${message.attempts}) is not an invalidation event: ${parsed.problems}`,
      );
    }
    retry(message);
  }

  if (valid.length > 0) {
    const isolation = { left: ISOLATION_APPLIES, lastAttempt, steps: limits.steps };
    await applyValid(services, valid, limits, report, retry, isolation);
  }

  try {
    await recordHeartbeat(services.redis, services.config.CACHE_PREFIX, "purge", { ...report });
  } catch (error) {
    console.warn(`purge: heartbeat not recorded: ${describeError(error)}`);
  }
  console.log(
    `purge: ${queue} batch of ${messages.length}: ${report.acked} acked, ${report.retried} retried` +
      ` (${report.invalid} invalid, ${report.poison} poison); applied ${report.applied.keys} keys,` +
      ` ${report.applied.tags} tags, ${report.applied.versions} versions;` +
      ` ${report.patterns.steps} purge steps, ${report.patternsContinued} purges continued` +
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

/**
 * Settles spent isolating the messages Redis refuses, per batch (two per halving, each an apply
 * plus its outbox mark and publish): three halvings narrow a batch of 50 to the 7 or so around
 * a bad message, within the 50 subrequests of an invocation; what is left is retried together.
 * Pattern steps are shared by all the halves (`isolation.steps`), as by one batch.
 */
const ISOLATION_APPLIES = 6;

async function applyValid(
  services: Services,
  valid: readonly { message: PurgeMessage; event: InvalidationEvent }[],
  limits: PatternLimits,
  report: PurgeReport,
  retry: (message: PurgeMessage) => void,
  isolation: { left: number; lastAttempt: number; steps: number },
): Promise<void> {
  const settled = await settleEvents(
    services,
    valid.map(({ event }) => ({
      change: event,
      origin: event.origin,
      at: event.at,
      outboxIds: event.outboxIds ?? [],
    })),
    { ...limits, steps: isolation.steps },
  );
  isolation.steps = Math.max(0, isolation.steps - settled.patterns.steps);
  if (!settled.applied) {
    const refused = isRedisReplyError(settled.applyCause);
    // Redis answered and refused: find the messages it refuses, apply the others.
    if (refused && valid.length > 1 && isolation.left >= 2) {
      isolation.left -= 2;
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
