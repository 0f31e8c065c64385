import type { JsonValue } from "../../db/schema";
import { storableText } from "../db/text";
import { invalidationEventSchema } from "../domain/events";
import { type DeadLetterRow, insertDeadLetters, releaseToDrains } from "../domain/outbox";
import { recordOutboxIntent } from "../domain/outbox-sweep";
import type { Services } from "../runtime/services";
import { checkEvent, describeError } from "./apply-event";
import { recordHeartbeat } from "./heartbeat";
import type { PurgeMessage } from "./purge";

/**
 * The dead-letter queue's consumer: what the purge queue gave up on goes back to the outbox,
 * where the cron's drain applies it, so an invalidation is never lost to a long outage.
 *
 * A message reaches the dead-letter queue after its last delivery failed (wrangler.toml
 * `max_retries`): Redis was down for the minute or so its retries span, or Redis refuses it, or
 * it is not an event at all. Per message, in one transaction of at most two statements per batch:
 * - an event carrying `outboxIds`: its rows are still in the outbox; the pending ones are given
 *   back to the drains at once (`releaseToDrains` clears the grace that left them to the queue);
 * - an event without (an admin purge queued while Postgres was down, a continuation split
 *   without its rows): inserted as a new pending row, cursors and all;
 * - both hold for an event of a newer release (top-level fields this release does not know,
 *   during a deploy): its rows are released, or it is inserted as it was sent, pending, for
 *   that release's drains (drain.ts leaves it to them);
 * - anything else: inserted as a row parked at once, its reason in `last_error` and its body
 *   kept, counted in /admin/stats `outbox.stuck` for a person to read.
 * Nothing is acked before Postgres has it; when Postgres fails the batch is retried, and on its
 * last delivery (`maxRetries`, wrangler.toml) each message is logged whole, the last trace of it.
 *
 * @example
 * const report = await processDeadLetters(services, "edgecache-purge-dlq", batch.messages);
 * report.requeued; // events given back to the drains
 */
export async function processDeadLetters(
  services: Services,
  queue: string,
  messages: readonly PurgeMessage[],
  options: { maxRetries?: number } = {},
): Promise<DeadLetterReport> {
  const prefix = services.config.CACHE_PREFIX;
  const lastAttempt = (options.maxRetries ?? DEAD_LETTER_MAX_RETRIES) + 1;
  const report: DeadLetterReport = {
    queue,
    messages: messages.length,
    released: 0,
    alreadyApplied: 0,
    requeued: 0,
    parked: 0,
    duplicates: 0,
    retried: 0,
  };
  const held = new Set<number>();
  const rows: DeadLetterRow[] = [];
  for (const message of messages) {
    const checked = checkEvent(invalidationEventSchema, message.body, "body");
    // An event of a newer release (fields this one does not know) is kept as it was sent, for
    // that release's drains: parked as "not an event" it could only be discarded, and with it
    // an admin purge that had no outbox row (a deploy runs two releases side by side).
    const event = checked.ok ? checked.event : checked.newer?.event;
    if (event?.outboxIds?.length) {
      for (const id of event.outboxIds) held.add(id);
    } else if (event) {
      // As it was sent (the drain's schema is the event's): a row like a writer's.
      rows.push({ messageId: message.id, event: storable(checked.ok ? event : message.body) });
    } else if (!checked.ok) {
      rows.push({
        messageId: message.id,
        event: { deadLetter: message.id, body: storable(message.body) },
        parkedBecause: storableText(
          `dead letter ${message.id} after ${message.attempts} deliveries: not an invalidation event: ${checked.problems}`,
        ),
      });
    }
  }

  try {
    // Both or neither: a retry after half of it would insert the rows a second time.
    // New pending rows: recorded as a writer's are (src/domain/outbox-sweep.ts).
    const intent = recordOutboxIntent(services.redis, services.config);
    const { released, recorded } = await services.db.transaction(async (tx) => {
      const released = await releaseToDrains(tx, prefix, [...held]);
      const recorded = new Set(await insertDeadLetters(tx, prefix, rows));
      await intent;
      return { released, recorded };
    });
    report.released = released;
    report.alreadyApplied = held.size - released;
    for (const row of rows) {
      if (!recorded.has(row.messageId)) report.duplicates++;
      else if (row.parkedBecause === undefined) report.requeued++;
      else report.parked++;
    }
    for (const message of messages) message.ack();
  } catch (error) {
    report.error = `Postgres did not take the dead letters, batch retried: ${describeError(error)}`;
    for (const message of messages) {
      if (message.attempts >= lastAttempt) {
        // No queue after this one: the log line is all that is left of the message.
        console.error(
          `dead-letter: message ${message.id} lost after ${message.attempts} deliveries (${describeError(error)}); apply it by hand: ${JSON.stringify(storable(message.body))}`,
        );
      }
      message.retry({ delaySeconds: deadLetterDelaySeconds(message.attempts) });
      report.retried++;
    }
  }

  try {
    await recordHeartbeat(services.redis, prefix, "dead-letter", { ...report });
  } catch (error) {
    console.warn(`dead-letter: heartbeat not recorded: ${describeError(error)}`);
  }
  const line =
    `dead-letter: ${queue} batch of ${messages.length}: ${report.released} outbox rows released` +
    ` to the drains (${report.alreadyApplied} already applied), ${report.requeued} events and` +
    ` ${report.parked} non-events recorded in the outbox, ${report.duplicates} recorded before` +
    (report.error ? `; ${report.error}` : "");
  if (report.error || report.parked > 0) console.error(line);
  else console.warn(line);
  return report;
}

export interface DeadLetterReport {
  queue: string;
  messages: number;
  /** Outbox rows named by dead events that were still pending: the next drain applies them. */
  released: number;
  /** Outbox rows named by dead events that were applied meanwhile. */
  alreadyApplied: number;
  /** Events without outbox rows, inserted as pending rows. */
  requeued: number;
  /** Messages that are not events, inserted as parked rows. */
  parked: number;
  /** Messages recorded by an earlier delivery (the same message id): skipped. */
  duplicates: number;
  /** Messages retried because Postgres failed. */
  retried: number;
  error?: string;
}

/**
 * wrangler.toml `max_retries` of the dead-letter queue's consumer. Its retries wait out a
 * Postgres outage (deadLetterDelaySeconds: 1 min doubling to 1 h, about 5 h in all); there is no
 * queue after it.
 */
export const DEAD_LETTER_MAX_RETRIES = 10;

/** 60 s, 120 s, 240 s … capped at an hour. */
export function deadLetterDelaySeconds(attempts: number): number {
  return Math.min(3600, 30 * 2 ** Math.max(1, attempts));
}

/**
 * `body` as JSON Postgres accepts: a message sent as bytes or a v8 value may not be JSON, and
 * `jsonb` and `text` refuse NUL and lone surrogates, which JavaScript strings may hold. One such
 * message failed its whole batch's INSERT on every delivery, and with it every other dead letter
 * of the batch.
 */
function storable(body: unknown): { [key: string]: JsonValue } & JsonValue;
function storable(body: unknown): JsonValue;
function storable(body: unknown): JsonValue {
  let text: string | undefined;
  try {
    text = JSON.stringify(body);
  } catch {
    // A cycle or a BigInt: kept as text below.
  }
  if (text === undefined) return storableText(String(body));
  return clean(JSON.parse(text) as JsonValue);
}

/** Every string of `value`, object keys included, through storableText. */
function clean(value: JsonValue): JsonValue {
  if (typeof value === "string") return storableText(value);
  if (Array.isArray(value)) return value.map(clean);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), clean(v)]));
  }
  return value;
}
