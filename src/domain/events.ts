import { z } from "zod";

const name = z.string().min(1).max(512);

/** The largest SCAN cursor Redis accepts: an unsigned 64-bit integer. */
const MAX_SCAN_CURSOR = 2n ** 64n - 1n;

/**
 * Whether `s` can be a SCAN cursor: decimal digits within an unsigned 64-bit integer. Redis
 * refuses anything larger ("ERR invalid cursor"), so a purge resumed from it would fail on
 * every retry: such a cursor is refused where it comes in (the admin route, a queue message).
 *
 * @example
 * isScanCursor("1792"); // true
 * isScanCursor("99999999999999999999"); // false: above 2^64 - 1
 */
export function isScanCursor(s: string): boolean {
  return /^\d{1,20}$/.test(s) && BigInt(s) <= MAX_SCAN_CURSOR;
}

const scanCursor = z.string().refine(isScanCursor, "not a SCAN cursor (digits, at most 2^64 - 1)");

/**
 * An invalidation event, as written to cache_outbox and sent on the purge queue.
 * `versions` maps a versioned entity key (e.g. "product:42") to the newest committed version,
 * so a late or duplicated event can never move the cache backwards.
 */
export const invalidationEventSchema = z
  .object({
    keys: z.array(name).max(1000).optional(),
    tags: z.array(name).max(1000).optional(),
    patterns: z.array(name).max(100).optional(),
    versions: z.record(name, z.number().int().nonnegative()).optional(),
    origin: z.string().min(1).max(128),
    at: z.number().int().nonnegative(),
    /** Outbox rows this event settles once applied (set by writers and the outbox drain). */
    // Row ids are Postgres bigints: one past 2^53 would fail the UPDATE that marks its batch.
    outboxIds: z
      .array(z.number().int().positive().max(Number.MAX_SAFE_INTEGER))
      .max(1000)
      .optional(),
    /**
     * Where a pattern purge stopped (one cursor for every pattern of the event). Read for
     * messages enqueued before `cursors` existed; continuations now carry `cursors`.
     */
    cursor: scanCursor.optional(),
    /**
     * Where each pattern's purge stopped (glob → SCAN cursor; a pattern not named starts at
     * "0"). A continuation carries every unfinished purge of its outbox rows in ONE message,
     * so the rows are settled when the last of them finishes, not when the first does.
     */
    cursors: z.record(name, scanCursor).optional(),
  })
  .strict();

export type InvalidationEvent = z.infer<typeof invalidationEventSchema>;

/** What a write changes in the cache; becomes the outbox event. */
export type CacheChange = Pick<InvalidationEvent, "keys" | "tags" | "patterns" | "versions">;

export function toEvent(
  change: CacheChange,
  origin: string,
  outboxIds?: number[],
): InvalidationEvent {
  return { ...change, origin, at: Date.now(), ...(outboxIds ? { outboxIds } : {}) };
}
