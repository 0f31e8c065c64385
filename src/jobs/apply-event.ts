import type { z } from "zod";
import type { EdgeCache } from "../cache";
import { assertGlob, assertName } from "../cache/keys";
import type { CacheChange, InvalidationEvent } from "../domain/events";
import { queueCall } from "../domain/queue";

/**
 * Applying invalidation events to the cache, shared by the queue consumer, the cron's outbox
 * drain and POST /admin/invalidate. Events are merged first so any number of them costs one
 * Redis request for their keys, tags and versions; pattern purges run as bounded steps and
 * hand what is left back to the queue as a cursor.
 */

/** A change as carried by a queue message or an outbox row (a continuation has cursors). */
export type ChangeWithCursor = CacheChange & { cursor?: string; cursors?: Record<string, string> };

/** Where `glob`'s purge resumes for this change: its own cursor, the legacy one, or the start. */
export const cursorOf = (change: ChangeWithCursor, glob: string): string =>
  change.cursors?.[glob] ?? change.cursor ?? "0";

export interface MergedChange {
  keys: string[];
  tags: string[];
  /** Highest version per name: an older event in the same batch never lowers it. */
  versions: Record<string, number>;
}

export interface PatternJob {
  glob: string;
  /** Where the SCAN resumes; "0" is the start of the keyspace. */
  cursor: string;
  /** Indices (in the merged list) of the events waiting on this purge. */
  owners: number[];
}

export interface Merged {
  change: MergedChange;
  patterns: PatternJob[];
}

/**
 * Names the engine would refuse. The event schema only bounds lengths, and one bad name in a
 * merged apply would fail the whole batch on every redelivery, so such an event is treated as
 * malformed on its own instead.
 */
function nameProblems(change: ChangeWithCursor): string[] {
  const problems: string[] = [];
  const check = (what: string, value: string, assert: (kind: string, name: string) => string) => {
    try {
      assert(what, value);
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
  };
  for (const key of change.keys ?? []) check("key", key, assertName);
  for (const tag of change.tags ?? []) check("tag", tag, assertName);
  for (const name of Object.keys(change.versions ?? {})) check("version key", name, assertName);
  for (const glob of change.patterns ?? []) check("pattern", glob, (_, g) => assertGlob(g));
  for (const glob of Object.keys(change.cursors ?? {})) {
    if (!change.patterns?.includes(glob)) problems.push(`cursor for ${glob}, which is no pattern`);
  }
  return problems;
}

/**
 * An event that passed `checkEvent`, or why it did not. `newer`: the event is valid but for
 * top-level fields this release does not know, i.e. a newer release wrote it (the schema is
 * strict and has grown before: `outboxIds`, then `cursors`); `newer.event` is what this release
 * can read of it (its `outboxIds`). Such an event is neither applied in part (the unknown field
 * may be a kind of invalidation this release cannot do) nor parked: it waits for the release
 * that wrote it (dead-letter.ts, drain.ts).
 */
export type Checked<T> =
  | { ok: true; event: T }
  | { ok: false; problems: string; newer?: { fields: string[]; event: T } };

/**
 * Validates a queue message or an outbox row against `schema`, then its names (see
 * `nameProblems`), so the consumer and the drain refuse exactly the same events.
 *
 * @example
 * const checked = checkEvent(invalidationEventSchema, message.body, "body");
 * if (!checked.ok) console.warn(checked.problems); // "keys.0: Too small: …"
 */
export function checkEvent<T extends ChangeWithCursor>(
  schema: z.ZodType<T>,
  body: unknown,
  root: string,
): Checked<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || root}: ${i.message}`)
      .join("; ");
    const fields = unknownFieldsOnly(parsed.error.issues);
    if (fields && typeof body === "object" && body !== null) {
      const known: Record<string, unknown> = { ...body };
      for (const field of fields) delete known[field];
      const rest = checkEvent(schema, known, root);
      if (rest.ok) return { ok: false, problems, newer: { fields, event: rest.event } };
    }
    return { ok: false, problems };
  }
  const bad = nameProblems(parsed.data);
  if (bad.length > 0) return { ok: false, problems: bad.join("; ") };
  return { ok: true, event: parsed.data };
}

/** The unknown top-level fields, when they are all the schema refused; else undefined. */
function unknownFieldsOnly(issues: readonly z.core.$ZodIssue[]): string[] | undefined {
  const fields: string[] = [];
  for (const issue of issues) {
    if (issue.code !== "unrecognized_keys" || issue.path.length > 0) return undefined;
    fields.push(...issue.keys);
  }
  return fields.length > 0 ? fields : undefined;
}

export function mergeChanges(changes: readonly ChangeWithCursor[]): Merged {
  const keys = new Set<string>();
  const tags = new Set<string>();
  const versions: Record<string, number> = {};
  // glob -> cursor -> owners. A purge from "0" covers every key a continuation would still
  // find (SCAN returns every key present for the whole scan), so it absorbs them.
  const globs = new Map<string, Map<string, number[]>>();
  changes.forEach((change, index) => {
    for (const key of change.keys ?? []) keys.add(key);
    for (const tag of change.tags ?? []) tags.add(tag);
    for (const [name, version] of Object.entries(change.versions ?? {})) {
      versions[name] = Math.max(versions[name] ?? version, version);
    }
    for (const glob of change.patterns ?? []) {
      const cursor = cursorOf(change, glob);
      const byCursor = globs.get(glob) ?? new Map<string, number[]>();
      globs.set(glob, byCursor);
      const owners = byCursor.get(cursor) ?? [];
      if (!owners.includes(index)) owners.push(index);
      byCursor.set(cursor, owners);
    }
  });
  const patterns: PatternJob[] = [];
  for (const [glob, byCursor] of globs) {
    if (byCursor.has("0")) {
      const owners = [...new Set([...byCursor.values()].flat())].sort((a, b) => a - b);
      patterns.push({ glob, cursor: "0", owners });
    } else {
      for (const [cursor, owners] of byCursor) patterns.push({ glob, cursor, owners });
    }
  }
  return { change: { keys: [...keys], tags: [...tags], versions }, patterns };
}

export interface ApplyOutcome {
  keys: number;
  tags: number;
  versions: number;
  removed: number;
  tagsBumped: number;
  versionsAdvanced: number;
  /** Redis requests spent (one per chunk; one for any ordinary batch). */
  requests: number;
}

/**
 * Names per apply request. Ordinary batches are far below it; it only keeps a pathological
 * batch (50 messages of 1,000 keys) under Upstash's request size limit. A failure part-way
 * is fine: the caller retries everything and applying twice changes nothing.
 */
export const APPLY_CHUNK = 5000;

/**
 * The subrequests a settle of these changes spends besides its pattern steps and any `extra`
 * (a publish): its apply, one request per APPLY_CHUNK names (their sum before merging; admin
 * purges of 1,000 keys and 1,000 tags take several), the UPDATE that marks their rows, and, when
 * any has a pattern purge, its continuation send and the UPDATE that records it.
 *
 * @example
 * settleCost([{ keys: ["product:1"] }]); // 2: apply + mark
 * settleCost([{ patterns: ["product:*"] }]); // 4
 */
export function settleCost(changes: readonly CacheChange[], extra = 0): number {
  return costs(changes, extra).at(-1) ?? costOf(0, false, extra);
}

/**
 * How many of `changes`, from the front, can be settled together within `room` subrequests
 * (settleCost): 0 when not even the first fits.
 */
export function fitting(changes: readonly CacheChange[], room: number, extra = 0): number {
  const fit = costs(changes, extra).findIndex((cost) => cost > room);
  return fit < 0 ? changes.length : fit;
}

/** settleCost of each run from the front: of the first change, the first two, … all. */
function costs(changes: readonly CacheChange[], extra: number): number[] {
  let names = 0;
  let patterns = false;
  return changes.map((c) => {
    names += namesIn(c);
    patterns ||= (c.patterns?.length ?? 0) > 0;
    return costOf(names, patterns, extra);
  });
}

const costOf = (names: number, patterns: boolean, extra: number) =>
  Math.max(1, Math.ceil(names / APPLY_CHUNK)) + 1 + (patterns ? 2 : 0) + extra;

/** Keys, tags and versions a change names (a malformed outbox row counts what it seems to). */
function namesIn(c: CacheChange): number {
  const versions = c.versions && typeof c.versions === "object" ? Object.keys(c.versions) : [];
  return (c.keys?.length ?? 0) + (c.tags?.length ?? 0) + versions.length;
}

/**
 * Keys, tags and versions in ONE request (`cache.apply`), or one per APPLY_CHUNK names. Throws
 * CacheWriteError when Redis fails; `spent.requests` counts the requests sent either way (a
 * failure part-way has spent the chunks before it).
 */
export async function applyChange(
  cache: EdgeCache,
  change: MergedChange,
  spent: { requests: number } = { requests: 0 },
): Promise<ApplyOutcome> {
  const versions = Object.entries(change.versions);
  const outcome: ApplyOutcome = {
    keys: change.keys.length,
    tags: change.tags.length,
    versions: versions.length,
    removed: 0,
    tagsBumped: 0,
    versionsAdvanced: 0,
    requests: 0,
  };
  const items = [
    ...change.keys.map((k) => ["k", k] as const),
    ...change.tags.map((t) => ["t", t] as const),
    ...versions.map(([name]) => ["v", name] as const),
  ];
  for (let start = 0; start < items.length; start += APPLY_CHUNK) {
    const chunk = items.slice(start, start + APPLY_CHUNK);
    const part = {
      keys: chunk.filter(([kind]) => kind === "k").map(([, name]) => name),
      tags: chunk.filter(([kind]) => kind === "t").map(([, name]) => name),
      versions: Object.fromEntries(
        chunk
          .filter(([kind]) => kind === "v")
          .map(([, name]) => [name, change.versions[name] ?? 0]),
      ),
    };
    outcome.requests++;
    spent.requests++;
    const reply = await cache.apply(part);
    outcome.removed += reply.removed;
    outcome.tagsBumped += reply.tagsBumped;
    outcome.versionsAdvanced += reply.versionsAdvanced;
  }
  return outcome;
}

export interface PatternOutcome {
  glob: string;
  /** The cursor the purge started from. */
  from: string;
  /** Where it stopped ("0" when done). */
  cursor: string;
  done: boolean;
  /** The step that failed (Redis down); the purge was not advanced past `cursor`. */
  error?: string;
  deleted: number;
  scanned: number;
  steps: number;
  owners: number[];
}

export interface PatternRun {
  outcomes: PatternOutcome[];
  steps: number;
  deleted: number;
}

export interface PatternLimits {
  /** Purge steps (Redis requests) shared by all patterns of this run. */
  steps: number;
  /** Keys each step examines (SCAN COUNT total per step). */
  stepBudget: number;
}

export const DEFAULT_PATTERN_LIMITS: PatternLimits = { steps: 5, stepBudget: 1000 };

/**
 * Runs the purges one after another within a shared step budget. A purge the budget does not
 * finish (or never reaches) comes back with its cursor for the caller to re-enqueue. A failed
 * step stops every purge not yet done: Redis is unlikely to answer the next one.
 */
/** A purge that has not run a step yet: it stands at the cursor it was handed. */
export function notStarted(job: PatternJob): PatternOutcome {
  return {
    glob: job.glob,
    from: job.cursor,
    cursor: job.cursor,
    done: false,
    deleted: 0,
    scanned: 0,
    steps: 0,
    owners: job.owners,
  };
}

export async function runPatternJobs(
  cache: EdgeCache,
  jobs: readonly PatternJob[],
  limits: PatternLimits,
): Promise<PatternRun> {
  let steps = 0;
  let deleted = 0;
  let failure: string | undefined;
  const outcomes: PatternOutcome[] = [];
  for (const job of jobs) {
    const outcome = notStarted(job);
    outcomes.push(outcome);
    if (failure) {
      outcome.error = failure;
      continue;
    }
    while (!outcome.done && steps < limits.steps) {
      steps++;
      try {
        const step = await cache.purgePattern(job.glob, {
          cursor: outcome.cursor,
          budget: limits.stepBudget,
        });
        outcome.steps++;
        outcome.cursor = step.cursor;
        outcome.done = step.done;
        outcome.deleted += step.deleted;
        outcome.scanned += step.scanned;
        deleted += step.deleted;
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
        outcome.error = failure;
        break;
      }
    }
  }
  return { outcomes, steps, deleted };
}

/**
 * Cloudflare Queues limits (developers.cloudflare.com/queues/platform/limits; miniflare enforces
 * the same locally): at most 100 messages and 256 KB per `sendBatch`, 128 KB per message. KB is
 * taken as 1,000 bytes (miniflare's figure), the safe side of either reading.
 */
const SEND_BATCH_MAX = 100;
const SEND_BATCH_MAX_BYTES = 256_000;
/** What a message adds to its body in a batch (id, content type, timestamps): an allowance. */
const MESSAGE_OVERHEAD_BYTES = 100;
/** The largest body one message may carry, its overhead counted. */
export const MESSAGE_MAX_BYTES = 128_000 - MESSAGE_OVERHEAD_BYTES;

/** Bytes of `value` as the queue carries it (JSON, UTF-8). */
export function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value)).byteLength;
}

/**
 * `events` in `sendBatch`-sized runs: at most SEND_BATCH_MAX messages and SEND_BATCH_MAX_BYTES
 * (bodies plus their overhead) each. Throws, before anything is sent, for an event over the
 * per-message limit: the queue would refuse it, and with it the whole batch.
 */
export function sendBatches(events: readonly InvalidationEvent[]): InvalidationEvent[][] {
  const batches: InvalidationEvent[][] = [];
  let batch: InvalidationEvent[] = [];
  let bytes = 0;
  for (const event of events) {
    const size = jsonBytes(event);
    if (size > MESSAGE_MAX_BYTES) {
      throw new Error(`an event of ${size} bytes is over the queue's per-message limit`);
    }
    const cost = size + MESSAGE_OVERHEAD_BYTES;
    if (batch.length === SEND_BATCH_MAX || bytes + cost > SEND_BATCH_MAX_BYTES) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(event);
    bytes += cost;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * Sends events as JSON messages, each `sendBatch` within `timeoutMs` (src/domain/queue.ts);
 * returns how many subrequests it took. Throws on failure, a timeout included, a
 * `QueueSendError` that still counts the calls made (`sendsOf`): events of runs sent before the
 * failure may be delivered, which is harmless (applies are idempotent), and each call was a
 * subrequest of the invocation all the same.
 */
export async function sendEvents(
  queue: Queue<unknown> | undefined,
  events: readonly InvalidationEvent[],
  timeoutMs: number,
): Promise<number> {
  if (events.length === 0) return 0;
  if (!queue) throw new Error("no PURGE_QUEUE binding");
  let calls = 0;
  try {
    for (const batch of sendBatches(events)) {
      calls++;
      await queueCall(
        queue.sendBatch(batch.map((body) => ({ body, contentType: "json" as const }))),
        timeoutMs,
      );
    }
  } catch (error) {
    throw new QueueSendError(calls, error);
  }
  return calls;
}

/**
 * A `sendEvents` that failed after `calls` sendBatch calls, the failed one included. Its
 * message is its cause's (the reports quote it as before).
 */
export class QueueSendError extends Error {
  constructor(
    readonly calls: number,
    cause: unknown,
  ) {
    super(describeError(cause), { cause });
    this.name = "QueueSendError";
  }
}

/**
 * The subrequests a failed `sendEvents` made before it threw (0 for any other error): a budget
 * that counted none of them let a multi-batch continuation whose last call failed overrun it.
 *
 * @example
 *   catch (error) { budget.spend(sendsOf(error)); }
 */
export function sendsOf(error: unknown): number {
  return error instanceof QueueSendError ? error.calls : 0;
}

export function describeError(error: unknown): string {
  let current: unknown = error;
  const parts: string[] = [];
  for (let depth = 0; current !== undefined && depth < 4; depth++) {
    const message = current instanceof Error ? current.message : String(current);
    if (!parts.some((part) => part.includes(message))) parts.push(message);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ").slice(0, 500);
}
