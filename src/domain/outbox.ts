import { and, asc, inArray, isNull, lt, sql } from "drizzle-orm";
import { cacheOutbox, type JsonValue } from "../../db/schema";
import type { Db } from "../runtime/services";
import type { CacheChange } from "./events";

/** A drizzle transaction handle (what `db.transaction(fn)` passes to fn). */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/** Writes the invalidation event inside the caller's transaction: it commits with the data. */
export async function insertOutbox(tx: Tx, change: CacheChange, origin: string): Promise<number> {
  const [row] = await tx
    .insert(cacheOutbox)
    .values({ event: { ...change, origin } as { [key: string]: JsonValue } })
    .returning({ id: cacheOutbox.id });
  if (!row) throw new Error("outbox insert returned no row");
  return row.id;
}

export async function markProcessed(db: Db, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(cacheOutbox)
    .set({ processedAt: sql`now()` })
    .where(and(inArray(cacheOutbox.id, [...ids]), isNull(cacheOutbox.processedAt)));
}

export async function recordAttempt(db: Db, ids: readonly number[], error: string): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(cacheOutbox)
    .set({ attempts: sql`${cacheOutbox.attempts} + 1`, lastError: error.slice(0, 1000) })
    .where(inArray(cacheOutbox.id, [...ids]));
}

export interface PendingEvent {
  id: number;
  change: CacheChange & { origin?: string };
  createdAt: Date;
  attempts: number;
}

/**
 * After this many failed drains a row is parked: it stays in the table (and in the lag as
 * `stuck`) for a person to read, but no longer blocks the oldest-first drain.
 */
export const MAX_OUTBOX_ATTEMPTS = 10;

/** Unprocessed rows older than the grace period (a writer may still be delivering younger ones). */
export async function pendingEvents(
  db: Db,
  options: { olderThanMs: number; limit: number },
): Promise<PendingEvent[]> {
  const rows = await db
    .select()
    .from(cacheOutbox)
    .where(
      and(
        isNull(cacheOutbox.processedAt),
        lt(
          cacheOutbox.createdAt,
          sql`now() - make_interval(secs => ${options.olderThanMs / 1000})`,
        ),
      ),
    )
    .orderBy(asc(cacheOutbox.createdAt))
    .limit(options.limit);
  return rows.map((r) => ({
    id: r.id,
    change: r.event as PendingEvent["change"],
    createdAt: r.createdAt,
    attempts: r.attempts,
  }));
}

/** How far behind invalidation delivery is: rows not yet applied and the oldest one's age. */
export async function outboxLag(
  db: Db,
): Promise<{ pending: number; stuck: number; oldestAgeMs: number | null }> {
  const [row] = await db
    .select({
      pending: sql<number>`count(*)::int`,
      stuck: sql<number>`(count(*) filter (where ${cacheOutbox.attempts} >= ${MAX_OUTBOX_ATTEMPTS}))::int`,
      oldestAgeMs: sql<
        number | null
      >`(extract(epoch from now() - min(${cacheOutbox.createdAt})) * 1000)::bigint`,
    })
    .from(cacheOutbox)
    .where(isNull(cacheOutbox.processedAt));
  return {
    pending: Number(row?.pending ?? 0),
    stuck: Number(row?.stuck ?? 0),
    oldestAgeMs: row?.oldestAgeMs == null ? null : Number(row.oldestAgeMs),
  };
}
