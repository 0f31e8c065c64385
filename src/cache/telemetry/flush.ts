import type { KeySpace } from "../keys";
import { runScript, type ScriptClient } from "../redis";
import { statsFlushScript } from "../scripts";
import type { IsolateTelemetry } from "./isolate";

/** Where and how long an isolate's samples live (the engine's `hotKeys` settings). */
export interface HotWindows {
  windowMs: number;
  windows: number;
}

/**
 * Sends everything `telemetry` holds in ONE request (the stats-flush script): counters into
 * the isolate's stats shard, samples into the isolate's shard of each window they fell in.
 * A flush already under way in another request is waited for, on this request's own timers
 * and for at most `waitMs` (never on that request's promise), so that what it carries is in
 * Redis before this one's counts are. A lost flush (Redis unreachable) puts its batch back and
 * rethrows.
 *
 * @example
 *   await flushTelemetry(redis, keySpace("ec"), telemetryFor("ec"), { windowMs: 60_000, windows: 5 });
 */
export async function flushTelemetry(
  redis: ScriptClient,
  keys: KeySpace,
  telemetry: IsolateTelemetry,
  hot: HotWindows,
  waitMs = FLUSH_WAIT_MS,
): Promise<void> {
  // Not even a microtask when none is under way: the flush leaves right after the read.
  if (telemetry.flushing()) await flushSettled(telemetry, waitMs);
  const batch = telemetry.startFlush();
  if (!batch) return;
  const redisKeys = [keys.stats(telemetry.shard)];
  const args: string[] = [
    [...batch.counters].map(([field, delta]) => `${field},${delta}`).join(","),
    String(hot.windowMs * (hot.windows + 1)),
  ];
  for (const [window, members] of batch.hot) {
    redisKeys.push(keys.hot(window, telemetry.shard));
    args.push(JSON.stringify([...members].flatMap(([key, weight]) => [String(weight), key])));
  }
  try {
    await runScript(redis, statsFlushScript, redisKeys, args);
  } catch (error) {
    telemetry.endFlush(batch, false);
    throw error;
  }
  telemetry.endFlush(batch, true);
}

/** How long a flush or a stats read waits for another request's flush to land. */
export const FLUSH_WAIT_MS = 2_000;

/**
 * Resolves once no flush is under way in `telemetry`, or after `waitMs`: it looks at plain data
 * every 5 ms on the caller's own timers, as a flight's followers do (src/cache/read/coalesce.ts).
 *
 * @example
 *   await flushSettled(telemetryFor("ec"), 2_000); // then read the shards: the flush is in
 */
export async function flushSettled(telemetry: IsolateTelemetry, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  while (telemetry.flushing() && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
