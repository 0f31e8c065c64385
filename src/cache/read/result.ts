import type { Resolved } from "../options";
import type { CacheResult } from "../types";

/**
 * The result of a value the caller just loaded (MISS): nominal windows (before jitter),
 * capped by an absolute expiry like the stored entry.
 *
 * @example
 *   loadedResult(row, opts); // { value: row, status: "MISS", ageMs: 0, ttlMs: 60_000, … }
 */
export function loadedResult<T>(value: T, opts: Resolved<T>): CacheResult<T> {
  const untilExpiry =
    opts.expiresAtMs === undefined
      ? Number.POSITIVE_INFINITY
      : Math.max(0, opts.expiresAtMs - Date.now());
  // A negative entry lives `negativeTtl`, with no grace (write/store.ts, fillLoaded).
  const negative = value === null && opts.negativeTtl !== undefined && opts.negativeTtl > 0;
  const ttl = negative ? (opts.negativeTtl as number) : opts.ttl;
  const staleTtl = negative ? 0 : opts.staleTtl;
  return {
    value,
    status: "MISS",
    version: value != null && opts.versionKey && opts.versionOf ? opts.versionOf(value) : null,
    ageMs: 0,
    ttlMs: Math.min(ttl, untilExpiry),
    staleTtlMs: Math.min(ttl + staleTtl, untilExpiry),
  };
}
