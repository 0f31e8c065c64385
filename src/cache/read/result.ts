import { assertVersion, type Resolved } from "../options";
import type { CacheResult } from "../types";

/**
 * The result of a value the caller just loaded (MISS): nominal windows (before jitter),
 * capped by an absolute expiry like the stored entry. `version` is the value's own version
 * when the caller already has it (default: asks `versionOf`).
 *
 * @example
 *   loadedResult(row, opts); // { value: row, status: "MISS", ageMs: 0, ttlMs: 60_000, … }
 */
export function loadedResult<T>(
  value: T,
  opts: Resolved<T>,
  version: number | null = value != null && opts.versionKey && opts.versionOf
    ? assertVersion(opts.versionOf(value), "versionOf")
    : null,
): CacheResult<T> {
  const untilExpiry =
    opts.expiresAtMs === undefined
      ? Number.POSITIVE_INFINITY
      : Math.max(0, opts.expiresAtMs - Date.now());
  // A negative entry lives `negativeTtl`, with no grace (write/store.ts, prepareFill).
  const negative = value === null && opts.negativeTtl !== undefined && opts.negativeTtl > 0;
  const ttl = negative ? (opts.negativeTtl as number) : opts.ttl;
  const staleTtl = negative ? 0 : opts.staleTtl;
  return {
    value,
    status: "MISS",
    version,
    ageMs: 0,
    ttlMs: Math.min(ttl, untilExpiry),
    staleTtlMs: Math.min(ttl + staleTtl, untilExpiry),
  };
}

/**
 * The loaded value's own version for an answer whose fill was not prepared: `versionOf`'s
 * when it is a version, else null (it threw, or gave no version: the fill reported that).
 *
 * @example
 *   versionOrNull({ version: 3 }, opts); // 3, or null without a versionKey
 */
export function versionOrNull<T>(value: T, opts: Resolved<T>): number | null {
  if (value == null || !opts.versionKey || !opts.versionOf) return null;
  try {
    return assertVersion(opts.versionOf(value));
  } catch {
    return null;
  }
}

/**
 * `value` as a read of its entry gives it back: what `JSON.parse` makes of its JSON. Entries are
 * stored as JSON, so a HIT answers a `Date` as its ISO string, a `Map` as `{}`, `NaN` as null; a
 * MISS that answered the loader's own object would make one key's value change type with the
 * status. Every status answers this form (a fill answers the parse of the very JSON it sends).
 * A value with no JSON form (undefined, a function, a BigInt, a cycle) is answered as it is:
 * it cannot be cached, and the fill reports why.
 *
 * @example
 *   readBack({ at: new Date(0) }); // { at: "1970-01-01T00:00:00.000Z" }
 */
export function readBack<T>(value: T): T {
  if (typeof value === "string" || typeof value === "boolean" || value === null) return value;
  try {
    const json = JSON.stringify(value);
    return json === undefined ? value : (JSON.parse(json) as T);
  } catch {
    return value;
  }
}
