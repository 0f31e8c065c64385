import { and, asc, eq, gt, inArray, isNull, lt, or, type SQL, sql } from "drizzle-orm";
import { cacheOutbox, type JsonValue } from "../../db/schema";
import type { Db } from "../runtime/services";
import type { CacheChange } from "./events";

/**
 * The transactional outbox, scoped by cache prefix: every row records the CACHE_PREFIX of the
 * deployment that wrote it, and every read or update here names the prefix, so deployments
 * sharing one database never apply or settle each other's events.
 */

/** A drizzle transaction handle (what `db.transaction(fn)` passes to fn). */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/**
 * Writes an invalidation event as a pending row of `prefix`. A write passes its transaction, so
 * the event commits with the data. `queued`: the event goes to the queue at once without a
 * transaction of its own (POST /admin/invalidate async), so the row is stamped queued like a
 * write's hand-over: the message carries its id, the consumer marks it processed, and if the
 * queue gives up on the message the dead-letter consumer gives the row back to the drains.
 */
export async function insertOutbox(
  db: Db | Tx,
  change: CacheChange & { at?: number; cursor?: string },
  origin: string,
  prefix: string,
  options: { queued?: boolean } = {},
): Promise<number> {
  const [row] = await db
    .insert(cacheOutbox)
    .values({
      event: { ...change, origin } as { [key: string]: JsonValue },
      prefix,
      ...(options.queued ? { queuedAt: sql`now()` } : {}),
    })
    .returning({ id: cacheOutbox.id });
  if (!row) throw new Error("outbox insert returned no row");
  return row.id;
}

/** Marks rows of `prefix` processed (rows of another prefix with the same ids are left alone). */
export function markProcessed(db: Db, prefix: string, ids: readonly number[]): Promise<void> {
  return stampPending(db, prefix, ids, { processedAt: sql`now()` });
}

/** The rows among `ids` of `prefix` not settled yet (applied or discarded rows keep their record). */
const pendingAmong = (prefix: string, ids: readonly number[]) =>
  and(
    inArray(cacheOutbox.id, [...ids]),
    eq(cacheOutbox.prefix, prefix),
    isNull(cacheOutbox.processedAt),
  );

/** Sets `values` on the still-pending rows among `ids` of `prefix`, in one UPDATE. */
async function stampPending(
  db: Db,
  prefix: string,
  ids: readonly number[],
  values: { processedAt?: SQL; continuedAt?: SQL; queuedAt?: SQL },
): Promise<void> {
  if (ids.length === 0) return;
  await db.update(cacheOutbox).set(values).where(pendingAmong(prefix, ids));
}

/**
 * How long drains leave a row whose pattern purges continue on the queue to that chain (each
 * link renews it). Past it, a chain that died (its messages dead-lettered) is resumed by a
 * drain, from cursor 0.
 */
export const CONTINUATION_GRACE_S = 600;

/**
 * Records that these rows' unfinished purges were just handed to the queue as a continuation,
 * so that drains do not purge them again from cursor 0 while that chain runs (each drain used
 * to start one more chain).
 */
export function markContinued(db: Db, prefix: string, ids: readonly number[]): Promise<void> {
  return stampPending(db, prefix, ids, { continuedAt: sql`now()` });
}

/**
 * Records that these rows' events were just handed to the queue because Redis failed (a
 * write's own hand-over): drains of the same outage leave them to the queue for
 * QUEUED_GRACE_S instead of sending them again.
 */
export function markQueued(db: Db, prefix: string, ids: readonly number[]): Promise<void> {
  return stampPending(db, prefix, ids, { queuedAt: sql`now()` });
}

/**
 * Records why these rows could not be applied when the failure says nothing about the rows
 * (Redis unreachable): `last_error` is kept for a person to read, but no attempt is charged,
 * so an outage of any length parks nothing. Rows that failed on their own go through
 * `recordRowFailures`.
 */
export async function recordOutage(
  db: Db,
  prefix: string,
  ids: readonly number[],
  error: string,
  queued: ReadonlySet<number> = new Set(),
): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(cacheOutbox)
    .set({
      lastError: error.slice(0, 1000),
      // Only the rows this drain handed to the queue: the others are for the next drain.
      ...(queued.size > 0
        ? {
            queuedAt: sql`case when ${inArray(cacheOutbox.id, [...queued])} then now() else ${cacheOutbox.queuedAt} end`,
          }
        : {}),
    })
    // Settled meanwhile (applied by the queue, discarded by an admin): its record stays.
    .where(pendingAmong(prefix, ids));
}

/**
 * Seconds a drain in an outage leaves a row it handed to the queue to the queue: its message
 * is retried with backoff for about a minute (2+4+8+16+32 s, wrangler.toml `max_retries`), and
 * applied once Redis is back. Sending the same rows on every cron tick instead filled the
 * dead-letter queue with duplicates (12,000 for an hour's outage of 1,000 rows).
 */
export const QUEUED_GRACE_S = 120;

/**
 * Charges an attempt to each row with its own reason, in one UPDATE: rows that failed on their
 * own (malformed events) rarely fail for the same reason, and `last_error` must say why this
 * row is stuck, not why its neighbour is.
 *
 * @example
 * await recordRowFailures(db, "ec", [{ id: 7, error: "invalid event: keys: …" }]);
 */
export async function recordRowFailures(
  db: Db,
  prefix: string,
  failures: readonly { id: number; error: string }[],
): Promise<void> {
  if (failures.length === 0) return;
  const rows = sql.join(
    failures.map((f) => sql`(${f.id}::bigint, ${f.error.slice(0, 1000)}::text)`),
    sql`, `,
  );
  await db.execute(sql`
    update ${cacheOutbox}
    set attempts = ${cacheOutbox.attempts} + 1, last_error = failed.error
    from (values ${rows}) as failed(id, error)
    where ${cacheOutbox.id} = failed.id and ${cacheOutbox.prefix} = ${prefix}
      and ${cacheOutbox.processedAt} is null`);
}

/** A dead-lettered message as the outbox keeps it (src/jobs/dead-letter.ts). */
export interface DeadLetterRow {
  /** The queue message's id: a message recorded once is not recorded again. */
  messageId: string;
  /** The event to apply, or (for a message that is not one) what the message held. */
  event: { [key: string]: JsonValue };
  /** Set for a message that is not an invalidation event: the row is parked with this reason. */
  parkedBecause?: string;
}

/**
 * Inserts dead-lettered messages as outbox rows of `prefix`, in one INSERT. An event becomes a
 * pending row the cron's drain applies (with its outage handling and its parking of rows Redis
 * refuses); a message that is not an event becomes a row parked at once (MAX_OUTBOX_ATTEMPTS),
 * with its reason in `last_error`, for a person to read: it counts in the lag's `stuck`.
 * A message already recorded under `prefix` (the same id: a redelivery) is skipped. Returns
 * the message ids it recorded now.
 *
 * @example
 * await insertDeadLetters(db, "ec", [{ event: { keys: ["product:1"], origin: "admin", at } }]);
 */
export async function insertDeadLetters(
  db: Db | Tx,
  prefix: string,
  rows: readonly DeadLetterRow[],
): Promise<string[]> {
  if (rows.length === 0) return [];
  const inserted = await db
    .insert(cacheOutbox)
    .values(
      rows.map((row) => ({
        event: row.event,
        prefix,
        deadLetterId: row.messageId,
        ...(row.parkedBecause !== undefined
          ? { attempts: MAX_OUTBOX_ATTEMPTS, lastError: row.parkedBecause.slice(0, 1000) }
          : {}),
      })),
    )
    // The only unique constraint a new row can meet: (prefix, dead_letter_id).
    .onConflictDoNothing()
    .returning({ messageId: cacheOutbox.deadLetterId });
  return inserted.flatMap((r) => (r.messageId === null ? [] : [r.messageId]));
}

/**
 * Gives rows whose queue message was dead-lettered back to the drains at once: their
 * `queued_at` and `continued_at` (which make drains leave a row to the queue for a while) are
 * cleared on the still-pending ones among `ids`. Returns how many were still pending (the
 * others were applied by a duplicate, a drain or the write itself: nothing left to do).
 */
export async function releaseToDrains(
  db: Db | Tx,
  prefix: string,
  ids: readonly number[],
): Promise<number> {
  if (ids.length === 0) return 0;
  const released = await db
    .update(cacheOutbox)
    .set({ queuedAt: null, continuedAt: null })
    .where(pendingAmong(prefix, ids))
    .returning({ id: cacheOutbox.id });
  return released.length;
}

export interface PendingEvent {
  id: number;
  change: CacheChange & { origin?: string };
  createdAt: Date;
  attempts: number;
  /** Handed to the queue in an outage less than QUEUED_GRACE_S ago: the queue has it. */
  queuedRecently: boolean;
}

/**
 * After this many failed drains a row is parked: it stays in the table (and in the lag as
 * `stuck`) for a person to read, but drains no longer select it, so it cannot block them.
 */
export const MAX_OUTBOX_ATTEMPTS = 10;

/**
 * Unprocessed, unparked rows of `prefix`, oldest (lowest id) first, after id `afterId` (the
 * drain's keyset cursor), older than the grace period (a writer may still be delivering
 * younger ones; 0 takes every committed row).
 */
export async function pendingEvents(
  db: Db,
  options: { prefix: string; olderThanMs: number; limit: number; afterId?: number },
): Promise<PendingEvent[]> {
  const rows = await db
    .select({
      id: cacheOutbox.id,
      event: cacheOutbox.event,
      createdAt: cacheOutbox.createdAt,
      attempts: cacheOutbox.attempts,
      queuedRecently: sql<boolean>`coalesce(${cacheOutbox.queuedAt} > now() - make_interval(secs => ${QUEUED_GRACE_S}), false)`,
    })
    .from(cacheOutbox)
    .where(
      and(
        eq(cacheOutbox.prefix, options.prefix),
        isNull(cacheOutbox.processedAt),
        gt(cacheOutbox.id, options.afterId ?? 0),
        lt(cacheOutbox.attempts, MAX_OUTBOX_ATTEMPTS),
        // A row whose purges continue on the queue belongs to that chain (markContinued).
        or(
          isNull(cacheOutbox.continuedAt),
          lt(cacheOutbox.continuedAt, sql`now() - make_interval(secs => ${CONTINUATION_GRACE_S})`),
        ),
        options.olderThanMs > 0
          ? lt(
              cacheOutbox.createdAt,
              sql`now() - make_interval(secs => ${options.olderThanMs / 1000})`,
            )
          : undefined,
      ),
    )
    .orderBy(asc(cacheOutbox.id))
    .limit(options.limit);
  return rows.map((r) => ({
    id: r.id,
    change: r.event as PendingEvent["change"],
    createdAt: r.createdAt,
    attempts: r.attempts,
    queuedRecently: r.queuedRecently === true,
  }));
}

/** The outbox lag as `outboxLag` and `pruneAndLag` answer it. */
export interface OutboxLag {
  pending: number;
  stuck: number;
  oldestAgeMs: number | null;
}

/** The lag's columns and its rows (`prefix`'s not yet applied): one text for both statements. */
const lagColumns = sql`count(*)::int as pending,
  (count(*) filter (where ${cacheOutbox.attempts} >= ${MAX_OUTBOX_ATTEMPTS}))::int as stuck,
  (extract(epoch from now() - min(${cacheOutbox.createdAt})) * 1000)::bigint as oldest_age_ms`;
const lagRows = (prefix: string) =>
  sql`from ${cacheOutbox} where ${cacheOutbox.prefix} = ${prefix} and ${cacheOutbox.processedAt} is null`;

type LagRow = { pending: number; stuck: number; oldest_age_ms: string | number | null };

function lagOf(row: LagRow | undefined): OutboxLag {
  return {
    pending: Number(row?.pending ?? 0),
    stuck: Number(row?.stuck ?? 0),
    oldestAgeMs: row?.oldest_age_ms == null ? null : Number(row.oldest_age_ms),
  };
}

/**
 * How far behind invalidation delivery is for `prefix`: rows not yet applied (parked ones
 * included), how many are parked (`stuck`), and the oldest pending row's age.
 */
export async function outboxLag(db: Db, prefix: string): Promise<OutboxLag> {
  const result = await db.execute<LagRow>(sql`select ${lagColumns} ${lagRows(prefix)}`);
  return lagOf(result.rows[0]);
}

/** How many applied rows one cron tick deletes at most (pruneAndLag). */
export const PRUNE_BATCH = 10_000;

/**
 * The cron's retention and its lag reading in ONE statement (no round trip added to a tick):
 * deletes up to PRUNE_BATCH of `prefix`'s applied rows that were applied more than
 * `retentionHours` ago, oldest first, and reads the lag as `outboxLag` does. Pending and parked
 * rows are never deleted, nor another prefix's rows. Without it the table grew by one row per
 * write for ever. `retentionHours` 0 keeps every row (the lag alone).
 *
 * @example
 * const { pending, pruned } = await pruneAndLag(db, "ec", 168);
 */
export async function pruneAndLag(
  db: Db,
  prefix: string,
  retentionHours: number,
): Promise<OutboxLag & { pruned: number }> {
  if (retentionHours <= 0) return { ...(await outboxLag(db, prefix)), pruned: 0 };
  // The DELETE runs in a data-modifying CTE: the SELECT sees the table as the statement began,
  // which is what it counts anyway (pending rows; the CTE deletes only applied ones). The inner
  // SELECT walks cache_outbox_processed_prefix_idx.
  const result = await db.execute<LagRow & { pruned: number }>(sql`
    with pruned as (
      delete from ${cacheOutbox}
      where ${cacheOutbox.id} in (
        select ${cacheOutbox.id} from ${cacheOutbox}
        where ${cacheOutbox.prefix} = ${prefix} and ${cacheOutbox.processedAt} is not null
          and ${cacheOutbox.processedAt} < now() - make_interval(hours => ${retentionHours}::int)
        order by ${cacheOutbox.processedAt}
        limit ${PRUNE_BATCH})
      returning 1)
    select ${lagColumns}, (select count(*)::int from pruned) as pruned ${lagRows(prefix)}`);
  const row = result.rows[0];
  return { ...lagOf(row), pruned: Number(row?.pruned ?? 0) };
}

/** An outbox row as an operator sees it (GET /admin/outbox/{id}; the list previews `event`). */
export interface OutboxRowView {
  id: number;
  createdAt: string;
  attempts: number;
  /** Parked: drains no longer try it (every attempt failed, or a dead letter that is not an event). */
  parked: boolean;
  /** Why its last attempt failed (a parked row: why it was parked). */
  lastError: string | null;
  /** When a drain or its write last handed it to the queue in an outage (the queue has it). */
  queuedAt: string | null;
  /** When its pattern purges last continued on the queue (that chain has it). */
  continuedAt: string | null;
  /** The queue message id a dead letter came as (src/jobs/dead-letter.ts), else null. */
  deadLetterId: string | null;
  /** The event's JSON text, whole or (in a list) its first PREVIEW_CHARS characters. */
  eventText: string;
  /** The whole event's JSON text length. */
  eventChars: number;
}

/** Characters of each event a list shows: a page of 100 rows of 128 KB bodies was 12–38 MB. */
export const PREVIEW_CHARS = 1000;

const viewColumns = (chars: number | null) => ({
  id: cacheOutbox.id,
  createdAt: cacheOutbox.createdAt,
  attempts: cacheOutbox.attempts,
  lastError: cacheOutbox.lastError,
  queuedAt: cacheOutbox.queuedAt,
  continuedAt: cacheOutbox.continuedAt,
  deadLetterId: cacheOutbox.deadLetterId,
  eventText:
    chars === null
      ? sql<string>`${cacheOutbox.event}::text`
      : sql<string>`left(${cacheOutbox.event}::text, ${chars})`,
  eventChars: sql<number>`length(${cacheOutbox.event}::text)`,
});

type ViewRow = {
  id: number;
  createdAt: Date;
  attempts: number;
  lastError: string | null;
  queuedAt: Date | null;
  continuedAt: Date | null;
  deadLetterId: string | null;
  eventText: string;
  eventChars: number;
};

const toView = (r: ViewRow): OutboxRowView => ({
  ...r,
  createdAt: r.createdAt.toISOString(),
  queuedAt: r.queuedAt?.toISOString() ?? null,
  continuedAt: r.continuedAt?.toISOString() ?? null,
  parked: r.attempts >= MAX_OUTBOX_ATTEMPTS,
  eventChars: Number(r.eventChars),
});

/**
 * Pending rows of `prefix`, oldest first after id `afterId`: the parked ones (every drain
 * attempt failed, or a dead letter that is not an event) or those the drains still try, each
 * event cut to PREVIEW_CHARS (`outboxRow` has it whole).
 */
export async function listOutbox(
  db: Db,
  prefix: string,
  options: { state: "parked" | "pending"; limit: number; afterId: number },
): Promise<OutboxRowView[]> {
  const rows = await db
    .select(viewColumns(PREVIEW_CHARS))
    .from(cacheOutbox)
    .where(
      and(
        eq(cacheOutbox.prefix, prefix),
        isNull(cacheOutbox.processedAt),
        gt(cacheOutbox.id, options.afterId),
        options.state === "parked"
          ? sql`${cacheOutbox.attempts} >= ${MAX_OUTBOX_ATTEMPTS}`
          : lt(cacheOutbox.attempts, MAX_OUTBOX_ATTEMPTS),
      ),
    )
    .orderBy(asc(cacheOutbox.id))
    .limit(options.limit);
  return rows.map(toView);
}

/** One row of `prefix`, its event whole, settled or not; undefined when there is none. */
export async function outboxRow(
  db: Db,
  prefix: string,
  id: number,
): Promise<(OutboxRowView & { event: JsonValue; processedAt: string | null }) | undefined> {
  const [row] = await db
    .select({
      ...viewColumns(null),
      event: cacheOutbox.event,
      processedAt: cacheOutbox.processedAt,
    })
    .from(cacheOutbox)
    .where(and(eq(cacheOutbox.id, id), eq(cacheOutbox.prefix, prefix)));
  if (!row) return undefined;
  const { event, processedAt, ...rest } = row;
  return { ...toView(rest), event, processedAt: processedAt?.toISOString() ?? null };
}

/**
 * What became of an operator's action on one row: done; "not-parked" (the drains or the queue
 * still have it: acting on it would run its purges twice or send it again); "processed"
 * (applied or discarded already); "missing" (no such row of this prefix).
 */
export type RowAction = "done" | "not-parked" | "processed" | "missing";

/** Only parked rows: no drain selects them, no queue chain renews them. */
const parkedRow = (prefix: string, id: number) =>
  and(
    eq(cacheOutbox.id, id),
    eq(cacheOutbox.prefix, prefix),
    isNull(cacheOutbox.processedAt),
    sql`${cacheOutbox.attempts} >= ${MAX_OUTBOX_ATTEMPTS}`,
  );

/**
 * Gives a parked row of `prefix` back to the drains once its cause is mended (a key that held
 * the wrong type): attempts to 0, so the next drain applies it. `last_error` keeps why it was
 * parked until a drain records a newer failure.
 */
export async function retryRow(db: Db, prefix: string, id: number): Promise<RowAction> {
  const updated = await db
    .update(cacheOutbox)
    .set({ attempts: 0, queuedAt: null, continuedAt: null })
    .where(parkedRow(prefix, id))
    .returning({ id: cacheOutbox.id });
  return updated.length > 0 ? "done" : rowState(db, prefix, id);
}

/**
 * Settles a parked row of `prefix` without applying it (a dead letter nobody can apply): it
 * leaves the lag and the parked count, and stays in the table, `last_error` saying an admin
 * discarded it and why it had failed.
 */
export async function discardRow(db: Db, prefix: string, id: number): Promise<RowAction> {
  const updated = await db
    .update(cacheOutbox)
    .set({
      processedAt: sql`now()`,
      lastError: sql`left('discarded by an admin' || coalesce(': ' || ${cacheOutbox.lastError}, ''), 1000)`,
    })
    .where(parkedRow(prefix, id))
    .returning({ id: cacheOutbox.id });
  return updated.length > 0 ? "done" : rowState(db, prefix, id);
}

async function rowState(db: Db, prefix: string, id: number): Promise<RowAction> {
  const [row] = await db
    .select({ processedAt: cacheOutbox.processedAt })
    .from(cacheOutbox)
    .where(and(eq(cacheOutbox.id, id), eq(cacheOutbox.prefix, prefix)));
  if (!row) return "missing";
  return row.processedAt === null ? "not-parked" : "processed";
}
