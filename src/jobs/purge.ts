import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import { markProcessed } from "../domain/outbox";
import type { Services } from "../runtime/services";
import {
  applyChange,
  continuationEvent,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  mergeChanges,
  nameProblems,
  type PatternLimits,
  type PatternOutcome,
  runPatternJobs,
  sendEvents,
} from "./apply-event";
import { recordHeartbeat } from "./heartbeat";

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

/** wrangler.toml `max_retries`: past it Cloudflare moves the message to the dead-letter queue. */
export const MAX_RETRIES = 5;

export interface PurgeOptions {
  /** Pattern purge steps per batch and keys per step. Default 5 × 1000. */
  patterns?: Partial<PatternLimits>;
  /** Attempts from which a malformed message is logged as poison. Default MAX_RETRIES. */
  maxRetries?: number;
}

export interface PurgeReport {
  queue: string;
  messages: number;
  acked: number;
  retried: number;
  /** Messages that are not invalidation events (retried toward the dead-letter queue). */
  invalid: number;
  /** Invalid messages on their last attempts, logged as poison. */
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

type Parsed = { ok: true; event: InvalidationEvent } | { ok: false; problems: string };

function parseMessage(body: unknown): Parsed {
  const parsed = invalidationEventSchema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues
        .map((i) => `${i.path.join(".") || "body"}: ${i.message}`)
        .join("; "),
    };
  }
  const bad = nameProblems(parsed.data);
  if (bad.length > 0) return { ok: false, problems: bad.join("; ") };
  return { ok: true, event: parsed.data };
}

/**
 * Consumes a batch of invalidation events:
 * - every message is validated; a malformed one is retried with backoff (never acked), so after
 *   max_retries it lands in the dead-letter queue for a person to read, and is logged as poison
 *   on its last attempts;
 * - the valid ones are merged (keys and tags deduplicated, the highest version per name) and
 *   applied in ONE Redis request; if that fails, every message is retried: nothing is acked
 *   that was not applied;
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
  const maxRetries = options.maxRetries ?? MAX_RETRIES;
  const limits = { ...DEFAULT_PATTERN_LIMITS, ...options.patterns };
  const report = emptyReport(queue, messages.length);
  const retry = (message: PurgeMessage) => {
    message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    report.retried++;
  };

  const valid: { message: PurgeMessage; event: InvalidationEvent }[] = [];
  for (const message of messages) {
    const parsed = parseMessage(message.body);
    if (parsed.ok) {
      valid.push({ message, event: parsed.event });
      continue;
    }
    report.invalid++;
    if (message.attempts >= maxRetries) {
      report.poison++;
      console.error(
        `purge: poison message ${message.id} (attempt ${message.attempts} of ${maxRetries}, next stop the dead-letter queue): ${parsed.problems}`,
      );
    } else {
      console.warn(
        `purge: message ${message.id} (attempt ${message.attempts}) is not an invalidation event: ${parsed.problems}`,
      );
    }
    retry(message);
  }

  if (valid.length > 0) await applyValid(services, valid, limits, report, retry);

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

async function applyValid(
  services: Services,
  valid: readonly { message: PurgeMessage; event: InvalidationEvent }[],
  limits: PatternLimits,
  report: PurgeReport,
  retry: (message: PurgeMessage) => void,
): Promise<void> {
  const merged = mergeChanges(valid.map((v) => v.event));
  try {
    const outcome = await applyChange(services.cache, merged.change);
    report.applied = {
      keys: outcome.keys,
      tags: outcome.tags,
      versions: outcome.versions,
      removed: outcome.removed,
      versionsAdvanced: outcome.versionsAdvanced,
    };
  } catch (error) {
    report.error = `apply failed, batch retried: ${describeError(error)}`;
    console.error(`purge: ${report.error}`);
    for (const { message } of valid) retry(message);
    return;
  }

  if (services.config.PUBLISH_EVENTS) {
    await publishApplied(services, merged.change, valid.length).catch((error: unknown) => {
      // Subscribers are told best-effort; the cache itself is already consistent.
      console.warn(`purge: publish failed: ${describeError(error)}`);
    });
  }

  const run = await runPatternJobs(services.cache, merged.patterns, limits);
  report.patterns = {
    steps: run.steps,
    deleted: run.deleted,
    finished: run.outcomes.filter((o) => o.done).length,
  };
  const unfinished = run.outcomes.filter((o) => !o.done && !o.error);
  const failed = new Set<PatternOutcome>(run.outcomes.filter((o) => o.error));
  const continued = new Set<PatternOutcome>();
  if (unfinished.length > 0) {
    const events = unfinished.map((o) => {
      const owners = o.owners.map((i) => valid[i]?.event).filter((e) => e !== undefined);
      return continuationEvent(
        o,
        owners[0]?.origin ?? "purge",
        Math.min(...owners.map((e) => e.at)),
        owners.flatMap((e) => e.outboxIds ?? []),
      );
    });
    try {
      await sendEvents(services.queue, events);
      for (const o of unfinished) continued.add(o);
      report.patternsContinued = unfinished.length;
    } catch (error) {
      // Without the continuation the original message must come back: its redelivery
      // resumes from its own cursor.
      const reason = `re-enqueue of ${unfinished.length} purges failed: ${describeError(error)}`;
      report.error = reason;
      console.error(`purge: ${reason}`);
      for (const o of unfinished) failed.add(o);
    }
  }
  for (const o of failed) {
    if (o.error && !report.error) report.error = `purge of ${o.glob} failed: ${o.error}`;
  }

  const settled: number[] = [];
  valid.forEach(({ message, event }, index) => {
    const mine = run.outcomes.filter((o) => o.owners.includes(index));
    if (mine.some((o) => failed.has(o))) {
      retry(message);
      return;
    }
    message.ack();
    report.acked++;
    // A continued purge carries the outbox ids on; the row is settled when it finishes.
    if (!mine.some((o) => continued.has(o))) settled.push(...(event.outboxIds ?? []));
  });

  if (settled.length > 0) {
    const ids = [...new Set(settled)];
    try {
      await markProcessed(services.db, ids);
      report.outboxMarked = ids.length;
    } catch (error) {
      console.warn(
        `purge: outbox rows ${ids.join(",")} not marked (the cron will drain them): ${describeError(error)}`,
      );
    }
  }
}
