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
 * One flush at a time: a second caller waits for the running one, then sends what is left.
 * A lost flush (Redis unreachable) puts its batch back and rethrows.
 *
 * @example
 *   await flushTelemetry(redis, keySpace("ec"), telemetryFor("ec"), { windowMs: 60_000, windows: 5 });
 */
export async function flushTelemetry(
  redis: ScriptClient,
  keys: KeySpace,
  telemetry: IsolateTelemetry,
  hot: HotWindows,
): Promise<void> {
  while (telemetry.inflight) await telemetry.inflight.catch(() => {});
  const batch = telemetry.drain();
  if (!batch) return;
  telemetry.lastFlush = Date.now();
  const redisKeys = [keys.stats(telemetry.shard)];
  const args: string[] = [
    [...batch.counters].map(([field, delta]) => `${field},${delta}`).join(","),
    String(hot.windowMs * (hot.windows + 1)),
  ];
  for (const [window, members] of batch.hot) {
    redisKeys.push(keys.hot(window, telemetry.shard));
    args.push(JSON.stringify([...members].flatMap(([key, weight]) => [String(weight), key])));
  }
  const sending = runScript(redis, statsFlushScript, redisKeys, args).then(
    () => {
      telemetry.lastFlushFailed = false;
    },
    (error: unknown) => {
      telemetry.restore(batch);
      telemetry.lastFlushFailed = true; // the next try waits a whole interval (isolate.ts)
      throw error;
    },
  );
  telemetry.inflight = sending;
  try {
    await sending;
  } finally {
    if (telemetry.inflight === sending) telemetry.inflight = undefined;
  }
}
