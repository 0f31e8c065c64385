import { BoundedMap } from "../bounded-map";

/**
 * What one isolate counted and sampled for one key prefix, not yet sent to Redis.
 *
 * Engines are built per request, so this lives at module scope (see `telemetryFor`): every
 * request of the isolate adds to it, and the engine flushes it in the background at most once
 * per interval (flush.ts). It holds plain numbers and strings only, so sharing it across
 * requests is safe in workerd (no I/O object crosses a request).
 *
 * Each isolate writes to one stats shard and one hot-key shard, picked at random when its
 * telemetry is created, so no single Redis key receives every isolate's increments.
 *
 * @example
 *   const t = new IsolateTelemetry({ shard: 3 });
 *   t.add("hits");
 *   t.sample("product:1", 10, 29_000_123); // weight 1/rate, window id
 *   const batch = t.drain(); // { counters: Map, hot: Map<window, Map<key, weight>> } | null
 */
export class IsolateTelemetry {
  /** Which of the N shards this isolate writes; readers sum all N. */
  readonly shard: number;
  readonly #counters = new Map<string, number>();
  readonly #hot = new Map<number, Map<string, number>>();
  #hotMembers = 0;
  /** Redis clock minus this isolate's clock, learned from script replies (0 until known). */
  #clockOffset = 0;
  /** Date.now() of the last flush started (or of creation): the interval counts from there. */
  lastFlush: number;
  /**
   * The background flush under way, as plain data (its batch and when it started), never as a
   * promise: another request must not await this one's I/O (a cancelled request's would never
   * settle). See `startFlush`, `endFlush`, `flushing`.
   */
  #sending: { batch: TelemetryBatch; since: number } | undefined;
  /**
   * The last flush failed (Redis down): the next one waits the whole interval, however large the
   * batch. Without this, once the batch passed `maxBatch`, every request of an outage would
   * start another doomed flush: one more failing subrequest per request, its batch rebuilt each
   * time.
   */
  lastFlushFailed = false;

  constructor(options: { shard?: number; shards?: number; now?: number } = {}) {
    const shards = options.shards ?? DEFAULT_SHARDS;
    this.shard = options.shard ?? Math.floor(Math.random() * shards);
    this.lastFlush = options.now ?? Date.now();
  }

  add(field: string, delta = 1): void {
    this.#counters.set(field, (this.#counters.get(field) ?? 0) + delta);
  }

  /**
   * One sampled read of `key` in hot-key window `window` (floor(redisNow / windowMs)), weighing
   * `weight` (1 / sample rate). Past `MAX_HOT_MEMBERS` distinct keys pending (Redis down for a
   * long time), new keys are dropped: the sampler is an estimate, memory is not.
   */
  sample(key: string, weight: number, window: number): void {
    let members = this.#hot.get(window);
    if (!members) {
      members = new Map();
      this.#hot.set(window, members);
    }
    const had = members.get(key);
    if (had === undefined && this.#hotMembers >= MAX_HOT_MEMBERS) return;
    if (had === undefined) this.#hotMembers++;
    members.set(key, (had ?? 0) + weight);
  }

  /** Notes the Redis clock (ms) a reply carried, so window ids follow Redis, not this isolate. */
  observeRedisTime(redisNow: number): void {
    this.#clockOffset = redisNow - Date.now();
  }

  /** Best estimate of Redis's clock now (ms). */
  redisNow(): number {
    return Date.now() + this.#clockOffset;
  }

  /** Distinct pending entries (counter fields + sampled keys): what a flush would carry. */
  get size(): number {
    return this.#counters.size + this.#hotMembers;
  }

  /**
   * Whether a flush is under way at `now`. One that started `FLUSH_LOST_MS` ago or more is
   * given up (its request was cancelled, or never answered past every deadline): its batch
   * returns to the pending counts, to go out with the next flush.
   */
  flushing(now = Date.now()): boolean {
    const sending = this.#sending;
    if (sending === undefined) return false;
    if (now - sending.since < FLUSH_LOST_MS) return true;
    this.#sending = undefined;
    this.restore(sending.batch);
    return false;
  }

  /**
   * Takes everything pending for a flush that starts now; null when there is nothing. Pair it
   * with `endFlush(batch, ok)`.
   */
  startFlush(now = Date.now()): TelemetryBatch | null {
    const batch = this.drain();
    if (!batch) return null;
    this.lastFlush = now;
    this.#sending = { batch, since: now };
    return batch;
  }

  /**
   * A flush of `batch` answered: landed (`ok`), or lost, when its counts return to the pending
   * ones. A flush given up meanwhile (`flushing`) changes nothing when it answers late.
   */
  endFlush(batch: TelemetryBatch, ok: boolean): void {
    const mine = this.#sending?.batch === batch;
    if (mine) this.#sending = undefined;
    if (ok) {
      this.lastFlushFailed = false;
      return;
    }
    if (mine) this.restore(batch);
    this.lastFlushFailed = true; // the next try waits a whole interval (see lastFlushFailed)
  }

  /** Whether a background flush should start now. */
  due(now: number, intervalMs: number, maxBatch: number): boolean {
    if (this.size === 0 || this.flushing(now)) return false;
    if (now - this.lastFlush >= intervalMs) return true;
    return !this.lastFlushFailed && this.size >= maxBatch;
  }

  /** Pending counters, read without taking them (stats() adds them to what Redis holds). */
  pendingCounters(): ReadonlyMap<string, number> {
    return this.#counters;
  }

  /** Pending samples, read without taking them (hotKeys() merges them). */
  pendingSamples(): ReadonlyMap<number, ReadonlyMap<string, number>> {
    return this.#hot;
  }

  /** Takes everything pending; `restore(batch)` puts it back when its flush failed. */
  drain(): TelemetryBatch | null {
    if (this.size === 0) return null;
    const batch = { counters: new Map(this.#counters), hot: new Map(this.#hot) };
    this.#counters.clear();
    this.#hot.clear();
    this.#hotMembers = 0;
    return batch;
  }

  /** A lost flush (Redis unreachable): its counts and samples return to the pending ones. */
  restore(batch: TelemetryBatch): void {
    for (const [field, delta] of batch.counters) this.add(field, delta);
    for (const [window, members] of batch.hot) {
      for (const [key, weight] of members) this.sample(key, weight, window);
    }
  }
}

export interface TelemetryBatch {
  counters: Map<string, number>;
  hot: Map<number, Map<string, number>>;
}

export const DEFAULT_SHARDS = 8;
/** A flush not answered after this long is given up (well past every Redis deadline). */
export const FLUSH_LOST_MS = 30_000;
export const MAX_HOT_MEMBERS = 5_000;

/**
 * Prefixes whose telemetry an isolate keeps (the least recently used out first). An app may give
 * each tenant its own prefix; without a bound every prefix ever served stayed in memory.
 */
export const MAX_TELEMETRY_PREFIXES = 64;

/**
 * Telemetry dropped for room with counts still pending, by prefix: the next engine with a flush
 * due sends them (`takeOrphans`), and an engine of that prefix built before then takes its own
 * back. Past the bound the oldest is lost: that takes more than 128 prefixes with counts
 * pending within one flush interval in one isolate.
 */
const orphans = new BoundedMap<string, IsolateTelemetry>(MAX_TELEMETRY_PREFIXES);

const isolate = new BoundedMap<string, IsolateTelemetry>(MAX_TELEMETRY_PREFIXES, (prefix, t) => {
  if (t.size > 0 || t.flushing()) orphans.set(prefix, t);
});

/** The isolate's telemetry of `prefix` (module scope: shared by every engine of the isolate). */
/** The telemetry telemetryFor last moved to the young end of `isolate`. */
let youngest: IsolateTelemetry | undefined;

export function telemetryFor(prefix: string, shards = DEFAULT_SHARDS): IsolateTelemetry {
  let telemetry = isolate.get(prefix) ?? orphans.get(prefix);
  if (telemetry) orphans.delete(prefix);
  if (!telemetry || telemetry.shard >= shards) {
    const previous = telemetry?.drain();
    telemetry = new IsolateTelemetry({ shards });
    if (previous) telemetry.restore(previous);
  }
  // Engines are built per request: the prefix in use moves to the young end (a Map delete and
  // set per engine), unless it is there already, as the one prefix of most isolates always is.
  if (youngest !== telemetry || isolate.get(prefix) !== telemetry) isolate.touch(prefix, telemetry);
  youngest = telemetry;
  return telemetry;
}

/**
 * Up to `max` telemetries dropped for room with counts pending, taken for a flush under their
 * own prefix. A few per call: each flush is one more subrequest of the request that sends it.
 *
 * @example
 *   for (const [prefix, t] of takeOrphans(2)) await flushTelemetry(redis, keySpace(prefix), t, hot);
 */
export function takeOrphans(max: number): Array<[string, IsolateTelemetry]> {
  const taken: Array<[string, IsolateTelemetry]> = [];
  for (const [prefix, t] of orphans) {
    if (taken.length >= max) break;
    taken.push([prefix, t]);
  }
  for (const [prefix] of taken) orphans.delete(prefix);
  return taken;
}
