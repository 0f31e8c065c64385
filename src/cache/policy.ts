/** Pure freshness policies; no I/O, so they are unit-tested with fixed random sources. */

/**
 * Spreads a TTL uniformly over ttl·(1 ± jitter) so entries written together do not
 * expire (and reload) together.
 *
 * @example
 * ```ts
 * jitterTtl(60_000, 0.1, Math.random); // between 54_000 and 66_000
 * jitterTtl(60_000, 0.1, () => 0.5);   // 60_000
 * ```
 */
export function jitterTtl(ttlMs: number, jitter: number, random: () => number): number {
  if (jitter <= 0 || ttlMs <= 0) return ttlMs;
  const spread = Math.min(jitter, 1) * (2 * random() - 1);
  return Math.max(1, Math.round(ttlMs * (1 + spread)));
}

/**
 * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015):
 * refresh early when now − δ·β·ln(rand) ≥ expiry. δ is the measured load time, so slow loads
 * start refreshing earlier; the chance grows as expiry nears and one caller usually wins.
 *
 * @example
 * ```ts
 * // 1 s before expiry, a load that takes 200 ms: refresh when -ln(rand) ≥ 5 (≈ 0.7 % of reads)
 * shouldRefreshEarly(now, now + 1_000, 200, 1, Math.random);
 * ```
 */
export function shouldRefreshEarly(
  nowMs: number,
  freshUntilMs: number,
  loadTimeMs: number,
  beta: number,
  random: () => number,
): boolean {
  if (beta <= 0 || loadTimeMs <= 0 || nowMs >= freshUntilMs) return false;
  const r = Math.max(random(), Number.MIN_VALUE);
  return nowMs - loadTimeMs * beta * Math.log(r) >= freshUntilMs;
}

/**
 * Backoff between polls while another caller holds the lease: exponential to 200 ms, with
 * ±50 % jitter so a crowd of waiters does not poll in lockstep.
 */
export function leasePollDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(200, 10 * 2 ** attempt);
  return Math.max(1, Math.round(base * (0.5 + random())));
}
