/** Percentiles, the Zipf key sampler and the paired bootstrap used by the workloads. */
import { prng as prngFor } from "../../db/prng";

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * Zipf(s) over ranks 1..n: P(rank k) ∝ 1/k^s. Precomputed CDF, binary search per draw.
 * `random` is injectable so runs can be reproduced.
 */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) {
    sum += 1 / k ** s;
    cdf[k - 1] = sum;
  }
  for (let i = 0; i < n; i++) cdf[i] = (cdf[i] ?? 0) / sum;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] ?? 1) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** The seed's mulberry32: every contender sees the same operation sequence. */
export { prng as seededRandom } from "../../db/prng";

/**
 * How sure one run is of `a`'s median over `b`'s, when both were measured in the same turns
 * (turn i of each ran seconds apart, so turns are the pairs): the ratio of the medians of all
 * samples, and a 95 % interval from a paired bootstrap, which redraws whole turns with
 * replacement and takes the same turns for both. Seeded: the same samples give the same answer.
 *
 * @example
 *   medianRatio([[6.7, 6.9], [6.8, 7.0]], [[6.3, 6.4], [6.2, 6.5]]);
 *   // { ratio: 1.08…, low: …, high: …, turns: 2 }
 */
export function medianRatio(
  a: readonly (readonly number[])[],
  b: readonly (readonly number[])[],
  iterations = 1000,
  random: () => number = prngFor(0xb007),
): { ratio: number; low: number; high: number; turns: number } {
  const turns = Math.min(a.length, b.length);
  const ratio = percentile(a.slice(0, turns).flat(), 50) / percentile(b.slice(0, turns).flat(), 50);
  const draws: number[] = [];
  for (let it = 0; it < iterations; it++) {
    const xs: number[] = [];
    const ys: number[] = [];
    for (let t = 0; t < turns; t++) {
      const pick = Math.floor(random() * turns);
      xs.push(...(a[pick] ?? []));
      ys.push(...(b[pick] ?? []));
    }
    draws.push(percentile(xs, 50) / percentile(ys, 50));
  }
  return { ratio, low: percentile(draws, 2.5), high: percentile(draws, 97.5), turns };
}

export const round = (n: number, digits = 1) => Number(n.toFixed(digits));
