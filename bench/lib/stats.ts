/** Percentiles and the Zipf key sampler used by the workloads. */

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

export const round = (n: number, digits = 1) => Number(n.toFixed(digits));
