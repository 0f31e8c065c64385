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
 * How sure one run is of `a`'s `p`-th percentile over `b`'s, when both were measured in the
 * same turns (turn i of each ran seconds apart, so turns are the pairs): the ratio of the
 * percentiles of all samples, and a 95 % interval from a paired bootstrap, which redraws whole
 * turns with replacement and takes the same turns for both. Seeded: the same samples give the
 * same answer. Few turns give a wide interval, as they should.
 *
 * @example
 *   percentileRatio([[6.7, 6.9], [6.8, 7.0]], [[6.3, 6.4], [6.2, 6.5]], 50);
 *   // { ratio: 1.08…, low: …, high: …, turns: 2 }
 */
export function percentileRatio(
  a: readonly (readonly number[])[],
  b: readonly (readonly number[])[],
  p: number,
  iterations = 1000,
  random: () => number = prngFor(0xb007),
): { ratio: number; low: number; high: number; turns: number } {
  const turns = Math.min(a.length, b.length);
  const ratio = percentile(a.slice(0, turns).flat(), p) / percentile(b.slice(0, turns).flat(), p);
  // Reused buffers and a selection instead of a sort: a mixed run's 20,000 reads a side, 1,000
  // times over, would otherwise block the event loop for seconds.
  const longest = (xs: readonly (readonly number[])[]) =>
    xs.reduce((m, t) => Math.max(m, t.length), 0) * turns;
  const bufA = new Float64Array(longest(a));
  const bufB = new Float64Array(longest(b));
  const draws: number[] = [];
  for (let it = 0; it < iterations; it++) {
    let na = 0;
    let nb = 0;
    for (let t = 0; t < turns; t++) {
      const pick = Math.floor(random() * turns);
      for (const v of a[pick] ?? []) bufA[na++] = v;
      for (const v of b[pick] ?? []) bufB[nb++] = v;
    }
    if (na === 0 || nb === 0) continue;
    draws.push(selectPercentile(bufA, na, p) / selectPercentile(bufB, nb, p));
  }
  return { ratio, low: percentile(draws, 2.5), high: percentile(draws, 97.5), turns };
}

/** `percentile` of the first `n` values of `buf` (reordered in place), by quickselect. */
function selectPercentile(buf: Float64Array, n: number, p: number): number {
  const k = Math.min(n - 1, Math.floor((p / 100) * n));
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = buf[(lo + hi) >> 1] as number;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((buf[i] as number) < pivot) i++;
      while ((buf[j] as number) > pivot) j--;
      if (i <= j) {
        const tmp = buf[i] as number;
        buf[i] = buf[j] as number;
        buf[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return buf[k] as number;
}

/** `x: [ratio, low, high]` as "×1.077, 95 % interval ×1.050–×1.111". */
export function ratioText(r: { ratio: number; low: number; high: number }, digits = 3): string {
  const x = (v: number) => `×${v.toFixed(digits)}`;
  return `${x(r.ratio)}, 95 % interval ${x(r.low)}–${x(r.high)}`;
}

export const round = (n: number, digits = 1) => Number(n.toFixed(digits));
