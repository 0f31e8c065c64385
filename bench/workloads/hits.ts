/** The warm-hit measurement the warm and global workloads share. */
import type { Row } from "../lib/db";
import type { RedisCost, Stage } from "../lib/harness";
import { percentile } from "../lib/stats";
import type { Contender, ContenderModule } from "../lib/types";

export interface HitRun {
  stage: Stage;
  contender: ContenderModule;
  cache: Contender;
  /** Already cached; read in turn, `hits` times in all. */
  keys: readonly string[];
  hits: number;
  load: (key: string) => Promise<Row>;
  /** Called every `every` reads with how many are done. */
  onProgress: (done: number) => void;
  every: number;
}

/**
 * Zeroes the contender's Redis counters, makes `hits` sequential reads cycling over `keys`, each
 * timed on its own, waits for background work, and answers the latency percentiles (ms) and
 * what the reads cost in Redis.
 *
 * @example
 * const { p50, p99, cost } = await measureHits({ stage, contender: c, cache, keys, hits: 60,
 *   load: (key) => stage.db.load(key), onProgress: (n) => progress(`${n}/60`), every: 20 });
 */
export async function measureHits(
  run: HitRun,
): Promise<{ p50: number; p99: number; cost: RedisCost }> {
  const { stage, contender, cache, keys, hits, load, onProgress, every } = run;
  await stage.resetCost(contender);
  const times: number[] = [];
  for (let i = 0; i < hits; i++) {
    const key = keys[i % keys.length] as string;
    const t = performance.now();
    await cache.get(key, () => load(key));
    times.push(performance.now() - t);
    if ((i + 1) % every === 0) onProgress(i + 1);
  }
  await cache.settle();
  const cost = await stage.cost(contender);
  return { p50: percentile(times, 50), p99: percentile(times, 99), cost };
}
