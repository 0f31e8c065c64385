import type { EdgeCache } from "../cache";
import type { Services } from "../runtime/services";
import { type CacheChange, toEvent } from "./events";
import { insertOutbox, markProcessed, markQueued, type Tx } from "./outbox";
import { recordOutboxIntent } from "./outbox-sweep";
import { queueCall } from "./queue";

/** How the invalidation of a committed write reached the cache. */
export type Delivery = "applied" | "queued" | "deferred";

export interface WriteOutcome<T> {
  result: T;
  delivery: Delivery;
}

export interface WriteSpec<T> {
  /** Where the event came from (route name), for logs and the queue. */
  origin: string;
  /** Changes the rows inside the transaction and says what the cache must forget. */
  change(tx: Tx): Promise<{ result: T; cache: CacheChange }>;
  /**
   * Applies the change to the cache in one request. Default: `cache.apply` (invalidate keys,
   * bump tags, advance versions). Write-through entities pass their own (a versioned fill).
   */
  apply?(cache: EdgeCache, result: T, change: CacheChange): Promise<unknown>;
}

/**
 * The write path that never loses an invalidation:
 * 1. one Postgres transaction changes the row, bumps its version, inserts the outbox event;
 * 2. after commit and BEFORE responding, the event is applied to Redis (one request), so any
 *    read that starts after the response sees the write;
 * 3. if Redis fails, the event goes to the queue; if the queue fails too (refuses, or does not
 *    answer within QUEUE_TIMEOUT_MS), the row stays pending and the cron drains it. The write
 *    itself is never reported as failed because the cache failed, and is answered within the
 *    Redis and queue deadlines; the outbox row is marked done after the response (waitUntil).
 */
export async function commitWrite<T>(
  services: Services,
  spec: WriteSpec<T>,
): Promise<WriteOutcome<T>> {
  // With OUTBOX_SWEEP_MINUTES, quiet cron ticks skip Postgres unless a writer said it may
  // commit a pending row (src/domain/outbox-sweep.ts): sent beside the statements, awaited
  // before COMMIT, so a writer that dies after its commit is always seen by the next tick.
  const intent = recordOutboxIntent(services.redis, services.config);
  const { result, cache, outboxId } = await services.db.transaction(async (tx) => {
    const out = await spec.change(tx);
    const id = await insertOutbox(tx, out.cache, spec.origin, services.config.CACHE_PREFIX);
    await intent;
    return { ...out, outboxId: id };
  });

  let applied = false;
  try {
    if (spec.apply) await spec.apply(services.cache, result, cache);
    else await services.cache.apply(cache);
    applied = true;
  } catch (cacheError) {
    console.warn(`${spec.origin}: cache apply failed, handing the event to the queue`, cacheError);
  }
  if (applied && !cache.patterns?.length) {
    services.background(
      markProcessed(services.db, services.config.CACHE_PREFIX, [outboxId]),
      "outbox mark",
    );
    return { result, delivery: "applied" };
  }
  // Patterns are not one request: they go through the queue's bounded purge steps. After a
  // failed apply the whole event goes. One send, within QUEUE_TIMEOUT_MS: a queue that refuses
  // or hangs leaves the row pending for the cron, and the write is answered all the same.
  try {
    await enqueue(services, applied ? { patterns: cache.patterns } : cache, spec.origin, [
      outboxId,
    ]);
    if (!applied) {
      // The queue has the whole event: a drain during this outage must not send it again.
      services.background(
        markQueued(services.db, services.config.CACHE_PREFIX, [outboxId]),
        "outbox mark",
      );
    }
    return { result, delivery: "queued" };
  } catch (queueError) {
    console.error(
      `${spec.origin}: queue send failed${applied ? "" : " too"}; the cron will drain outbox row ${outboxId}`,
      queueError,
    );
    return { result, delivery: "deferred" };
  }
}

async function enqueue(
  services: Services,
  change: CacheChange,
  origin: string,
  outboxIds: number[],
): Promise<void> {
  if (!services.queue) throw new Error("no PURGE_QUEUE binding");
  await queueCall(
    services.queue.send(toEvent(change, origin, outboxIds), { contentType: "json" }),
    services.config.QUEUE_TIMEOUT_MS,
  );
}
