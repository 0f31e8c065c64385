import { type InvalidationEvent, invalidationEventSchema } from "../domain/events";
import type { Services } from "../runtime/services";
import { recordHeartbeat } from "./heartbeat";

export interface PurgeMessage {
  readonly id: string;
  readonly body: unknown;
  readonly attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

/** Exponential backoff for a redelivery: 2 s, 4 s, 8 s … capped at a minute. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(60, 2 ** Math.max(1, attempts));
}

export interface PurgeReport {
  accepted: number;
  rejected: number;
}

/**
 * Consumes a batch of invalidation events. This skeleton validates and acknowledges them;
 * applying them to the cache arrives with the cache engine. A malformed body is retried
 * rather than acked, so after max_retries it lands in the dead-letter queue for a person
 * to read instead of vanishing.
 */
export async function processPurgeBatch(
  services: Services,
  queue: string,
  messages: readonly PurgeMessage[],
): Promise<PurgeReport> {
  const valid: InvalidationEvent[] = [];
  let rejected = 0;
  for (const message of messages) {
    const parsed = invalidationEventSchema.safeParse(message.body);
    if (parsed.success) {
      valid.push(parsed.data);
      message.ack();
    } else {
      rejected++;
      console.warn(
        `purge: message ${message.id} (attempt ${message.attempts}) is not an invalidation event: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}`,
      );
      message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    }
  }
  const report = { accepted: valid.length, rejected };
  await recordHeartbeat(services.redis, services.config.CACHE_PREFIX, "purge", {
    queue,
    ...report,
  });
  console.log(
    `purge: ${queue} batch of ${messages.length}: ${valid.length} accepted, ${rejected} rejected`,
  );
  return report;
}
