/** Bench parameters: full run (≈3 min) and `--quick` (≈30 s); every field can be overridden. */
export interface BenchParams {
  /**
   * Sequential warm hits per contender. 1,000 in a full run: with 300, an A/A run put two copies
   * of one engine up to 4 % apart in p50 (the size of the gap measured); with 1,000, ≤ 2 %.
   */
  hits: number;
  /**
   * Untimed warm-hit reads per contender before the timed ones, issued 20 at a time: enough for
   * V8 to optimize each contender's hit path (traced with --trace-opt: the engine's read
   * functions reach TurboFan between their ~500th and ~2,900th call; until then a hit ran ~40 µs
   * of JavaScript before its request instead of ~10).
   */
  jitWarmup: number;
  /** Concurrent cold reads of one key in the stampede. */
  stampede: number;
  /** One-isolate stampede repetitions (fresh key each); the median-p50 one is reported. */
  stampedeRepeats: number;
  /** Loader delay during the stampede, ms. */
  stampedeLoadMs: number;
  /** "Isolates" (worker threads) in the multi-isolate stampede; 0 skips it. */
  isolates: number;
  /** Duration of the Zipf mixed workload per contender, s. */
  mixedSeconds: number;
  /** Turns the mixed workload's time is split into, contenders taking turns (drift evens out). */
  mixedSlices: number;
  /**
   * Turns the mixed workload runs before those, in the same rotation, untimed: they count for
   * stale reads and loads, not for ops/s, latency or CPU. An A/A run (edgecache against itself
   * under another id) measured whichever contender was listed first 3–10 % slower in ops/s and
   * up to 1.33× in read p99, most of it in the first turn's first slot.
   */
  mixedUntimedTurns: number;
  /**
   * Untimed warm-up per contender before the mixed turns, s, on keys of its own: the first
   * contender otherwise met a cold JIT and cold connections alone (its p99 was ~1.5× in an
   * A/A run of one engine against a copy of itself).
   */
  mixedWarmupSeconds: number;
  mixedKeys: number;
  mixedClients: number;
  /** Fraction of operations that are writes. */
  writeRatio: number;
  zipfS: number;
  /** Database query delay in the mixed, warm and group workloads, ms. */
  loadMs: number;
  /** Tagged entries in the group-invalidation workload. */
  groupSize: number;
  /** Rounds of the read/write race. */
  raceRounds: number;
  /** The racing reader's slow load, ms. */
  raceLoadMs: number;
  /** Sequential hits per contender on the Global topology (a primary hit costs 60 ms). */
  globalHits: number;
}

export const FULL: BenchParams = {
  hits: 1000,
  jitWarmup: 3000,
  stampede: 200,
  stampedeRepeats: 3,
  stampedeLoadMs: 50,
  isolates: 10,
  mixedSeconds: 10,
  mixedSlices: 10,
  mixedUntimedTurns: 1,
  mixedWarmupSeconds: 1,
  mixedKeys: 10_000,
  mixedClients: 50,
  writeRatio: 0.05,
  zipfS: 1.0,
  loadMs: 10,
  groupSize: 10_000,
  raceRounds: 40,
  raceLoadMs: 50,
  globalHits: 100,
};

export const QUICK: BenchParams = {
  ...FULL,
  hits: 60,
  jitWarmup: 0,
  stampedeRepeats: 1,
  mixedSeconds: 2,
  mixedSlices: 2,
  mixedUntimedTurns: 0,
  mixedWarmupSeconds: 0.3,
  groupSize: 500,
  globalHits: 30,
  raceRounds: 10,
};
