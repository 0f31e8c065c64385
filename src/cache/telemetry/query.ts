import type { KeySpace } from "../keys";
import { runScript, type ScriptClient } from "../redis";
import { hotKeysScript, statsReadScript } from "../scripts";
import type { HotKey, StatsSnapshot } from "../types";
import { FLUSH_WAIT_MS, flushSettled, type HotWindows } from "./flush";
import type { IsolateTelemetry } from "./isolate";

/**
 * Counters of every isolate: the N stats shards summed in ONE read-only request, plus what
 * this isolate counted and has not flushed yet (so a caller sees its own counts at once), with
 * `hit_ratio = (hits + stale_hits) / (hits + stale_hits + misses)` (0 before any read).
 *
 * @example
 *   const stats = await readStats(redis, keySpace("ec"), 8, telemetryFor("ec"));
 *   stats.hits; // every isolate's hits
 */
export async function readStats(
  redis: ScriptClient,
  keys: KeySpace,
  shards: number,
  telemetry: IsolateTelemetry,
): Promise<StatsSnapshot> {
  // A flush under way is waited for (no new request): its counts are then in Redis, once.
  await flushSettled(telemetry, FLUSH_WAIT_MS);
  const shardKeys = Array.from({ length: shards }, (_, i) => keys.stats(i));
  const raw = (await runScript(redis, statsReadScript, shardKeys, [])) as unknown[];
  const counters: Record<string, number> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) counters[String(raw[i])] = Number(raw[i + 1]);
  for (const [field, delta] of telemetry.pendingCounters()) {
    counters[field] = (counters[field] ?? 0) + delta;
  }
  const hits = counters.hits ?? 0;
  const stale = counters.stale_hits ?? 0;
  const misses = counters.misses ?? 0;
  const reads = hits + stale + misses;
  return {
    ...counters,
    hits,
    stale_hits: stale,
    misses,
    hit_ratio: reads === 0 ? 0 : (hits + stale) / reads,
  };
}

/**
 * Top `n` keys by decayed sampled frequency over the last `windows` windows of every shard,
 * in ONE read-only request; this isolate's unflushed samples are added with the same decay.
 * Window ids come from `telemetry.redisNow()` (the Redis clock learned from replies).
 */
export async function readHotKeys(
  redis: ScriptClient,
  keys: KeySpace,
  shards: number,
  telemetry: IsolateTelemetry,
  hot: HotWindows & { decay: number },
  n: number,
): Promise<HotKey[]> {
  await flushSettled(telemetry, FLUSH_WAIT_MS);
  const current = Math.floor(telemetry.redisNow() / hot.windowMs);
  const redisKeys: string[] = [];
  const weights: string[] = [];
  for (let age = 0; age < hot.windows; age++) {
    for (let shard = 0; shard < shards; shard++) {
      redisKeys.push(keys.hot(current - age, shard));
      weights.push(String(hot.decay ** age));
    }
  }
  const pending = telemetry.pendingSamples();
  // Keys with unflushed samples get their Redis score whatever its rank: one just outside the
  // top n may pass into it once its pending samples are added.
  const named = new Set<string>();
  for (const [, members] of pending) for (const [key] of members) named.add(key);
  const raw = (await runScript(redis, hotKeysScript, redisKeys, [n, ...weights, ...named])) as [
    unknown[],
    unknown[],
  ];
  const scores = new Map<string, number>();
  for (const list of raw) {
    for (let i = 0; i + 1 < list.length; i += 2) scores.set(String(list[i]), Number(list[i + 1]));
  }
  for (const [window, members] of pending) {
    // A sample a skewed clock put in a later window counts as current.
    const age = Math.max(0, current - window);
    if (age >= hot.windows) continue;
    for (const [key, weight] of members) {
      scores.set(key, (scores.get(key) ?? 0) + weight * hot.decay ** age);
    }
  }
  return [...scores]
    .map(([key, score]) => ({ key, score }))
    .sort((a, b) => b.score - a.score || a.key.localeCompare(b.key))
    .slice(0, n);
}
