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
  return {
    value,
    status: "MISS",
    version: value != null && opts.versionKey && opts.versionOf ? opts.versionOf(value) : null,
    ageMs: 0,
    ttlMs: Math.min(opts.ttl, untilExpiry),
    staleTtlMs: Math.min(opts.ttl + opts.staleTtl, untilExpiry),
  };
}
