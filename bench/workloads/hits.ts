/** The warm-hit measurement the warm and global workloads share. */
import type { Row } from "../lib/db";
import type { RedisCost, Stage } from "../lib/harness";
import type { Column } from "../lib/result";
import { percentile, seededRandom } from "../lib/stats";
import type { Contender, ContenderModule } from "../lib/types";

/**
 * What a hit costs on Upstash beyond its requests, from the gateway's counters: writing calls
 * (an `EVAL`/`EVALSHA` counts as writing unless its script is flagged `no-writes`) and scripts
 * that would run under the database's global lock. Null for a contender the gateway does not
 * count (RESP through the proxy).
 */
export const UPSTASH_COST_COLUMNS: Column[] = [
  { key: "writesPerHit", label: "writes/hit", better: "lower", digits: 2 },
  { key: "globalLockPerHit", label: "global-lock/hit", better: "lower", digits: 2 },
];

/** The values of UPSTASH_COST_COLUMNS for `hits` hits that cost `cost`. */
export function upstashCostPerHit(cost: RedisCost, hits: number) {
  return {
    writesPerHit: cost.writing === undefined ? null : cost.writing / hits,
    globalLockPerHit: cost.globalLock === undefined ? null : cost.globalLock / hits,
  };
}

/** One contender taking part in a hit measurement: its keys are already cached. */
export interface HitSubject {
  contender: ContenderModule;
  cache: Contender;
}

/**
 * Builds each contender in `stage` (run name `run`) and caches `keys` in it: the subjects of a
 * hit measurement.
 *
 * @example
 * const subjects = await cachedSubjects(stage, contenders, "warm", ["warm:0", "warm:1"]);
 */
export async function cachedSubjects(
  stage: Stage,
  contenders: readonly ContenderModule[],
  run: string,
  keys: readonly string[],
): Promise<HitSubject[]> {
  const subjects: HitSubject[] = [];
  for (const contender of contenders) {
    const cache = await stage.create(contender, run);
    for (const key of keys) await cache.get(key, () => stage.db.load(key, 0));
    await cache.settle();
    subjects.push({ contender, cache });
  }
  return subjects;
}

export interface HitRun {
  stage: Stage;
  subjects: readonly HitSubject[];
  /** Already cached; read in turn, `hits` times in all per subject. */
  keys: readonly string[];
  hits: number;
  load: (key: string) => Promise<Row>;
  /** Untimed reads per subject first: connections, scripts and the JIT warm for everyone. */
  warmup: number;
  /**
   * Untimed reads per subject before those, `keys.length` at a time (each on its own key, so
   * none coalesces): enough calls for V8 to optimize every contender's hit path. Concurrent
   * because only the number of calls matters to the JIT, not their spacing.
   */
  jitWarmup?: number;
  /** Reads per subject per turn: subjects take turns so machine drift hits them alike. */
  block: number;
  onProgress: (done: number) => void;
}

export interface HitMeasurement {
  p50: number;
  p99: number;
  /** The timed reads' latencies, turn by turn (the pairs of a paired comparison). */
  turns: number[][];
  cost: RedisCost;
  /** Loader calls during the timed reads (0 for a cache that hits). */
  loads: number;
}

/**
 * Warm hits, measured fairly across contenders: each subject first reads `warmup` times
 * untimed, then the subjects take turns of `block` timed sequential reads until each made
 * `hits`. Taking turns matters on a shared machine: whoever ran first in a one-after-the-other
 * run paid for the JIT and any background noise alone (one run measured the first contender
 * 1.3× the second, the same code measured second 1.02×). Each turn runs them in another
 * (seeded) order: the first reads after another contender's turn run on a colder machine (after
 * bentocache's turn, which leaves the gateway idle, the next contender's first read took ~1.6 ms
 * longer than its others, the one after it ~0.9 ms), and in a fixed order the same contender
 * paid that every turn.
 *
 * @example
 * const results = await measureHits({ stage, subjects, keys, hits: 300, warmup: 100, block: 20,
 *   load: (key) => stage.db.load(key), onProgress: (n) => progress(`${n}/300`) });
 */
/**
 * The order of one turn: a seeded shuffle, the same in every run. Rotating a fixed order would
 * not do: whoever follows a given contender in the cycle still follows it in every turn.
 */
function shuffled<T>(subjects: readonly T[], turn: number): T[] {
  const random = seededRandom(0x7a11 + turn);
  const out = [...subjects];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export async function measureHits(run: HitRun): Promise<Map<string, HitMeasurement>> {
  const { stage, subjects, keys, hits, load, warmup, block, onProgress } = run;
  const read = (s: HitSubject, i: number, loads: { n: number }) => {
    const key = keys[i % keys.length] as string;
    return s.cache.get(key, () => {
      loads.n++;
      return load(key);
    });
  };
  const untimed = { n: 0 };
  for (let done = 0, turn = 0; done < (run.jitWarmup ?? 0); done += keys.length, turn++) {
    for (const s of shuffled(subjects, turn)) {
      await Promise.all(keys.map((_, i) => read(s, i, untimed)));
    }
  }
  for (let done = 0, turn = 0; done < warmup; done += block, turn++) {
    for (const s of shuffled(subjects, turn)) {
      for (let i = done; i < Math.min(warmup, done + block); i++) await read(s, i, untimed);
    }
  }
  for (const s of subjects) await s.cache.settle();
  for (const s of subjects) await stage.resetCost(s.contender);
  const times = new Map(subjects.map((s) => [s.contender.id, [] as number[][]]));
  const loads = new Map(subjects.map((s) => [s.contender.id, { n: 0 }]));
  for (let done = 0, turn = 0; done < hits; done += block, turn++) {
    for (const s of shuffled(subjects, turn)) {
      const turnTimes: number[] = [];
      (times.get(s.contender.id) as number[][]).push(turnTimes);
      const counted = loads.get(s.contender.id) as { n: number };
      for (let i = done; i < Math.min(hits, done + block); i++) {
        const t = performance.now();
        await read(s, i, counted);
        turnTimes.push(performance.now() - t);
      }
    }
    onProgress(Math.min(hits, done + block));
  }
  const out = new Map<string, HitMeasurement>();
  for (const s of subjects) {
    await s.cache.settle();
    const turns = times.get(s.contender.id) as number[][];
    const mine = turns.flat();
    out.set(s.contender.id, {
      p50: percentile(mine, 50),
      p99: percentile(mine, 99),
      turns,
      cost: await stage.cost(s.contender),
      loads: loads.get(s.contender.id)?.n ?? 0,
    });
  }
  return out;
}
