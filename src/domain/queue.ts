import { withDeadline } from "../db/guard";

/**
 * A Queues `send` or `sendBatch` that settles within `timeoutMs` (QUEUE_TIMEOUT_MS): a producer
 * that never answers rejects with "queue send: no answer within <ms> ms", like any refused send.
 * Every Redis and Postgres call has a deadline; without this one a stuck Queues producer held a
 * write's response, POST /admin/invalidate, a cron tick and a consumer batch until the client or
 * the runtime gave up.
 *
 * A send that timed out may still be delivered later. Callers treat it as failed anyway: the
 * write's outbox row stays pending for the cron, a drain's rows stay pending, a consumer's
 * message is retried. A late duplicate changes nothing (applies are idempotent).
 *
 * @example
 * await queueCall(queue.send(event, { contentType: "json" }), config.QUEUE_TIMEOUT_MS);
 */
export function queueCall<T>(call: Promise<T>, timeoutMs: number): Promise<T> {
  return withDeadline(call, timeoutMs, "queue send");
}
