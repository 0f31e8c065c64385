import type { Context } from "hono";
import type { CacheResult } from "../cache";

/** Strong ETag from an entity version: `"v7"`. */
export const etagOf = (version: number) => `"v${version}"`;

/** True when If-None-Match names this version (or `*`). */
export function notModified(c: Context, version: number | null): boolean {
  const header = c.req.header("if-none-match");
  if (!header || version === null) return false;
  const tag = etagOf(version);
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .some((t) => t === tag || t === "*");
}

/**
 * Headers every cached response carries: X-Cache (HIT | STALE | MISS | BYPASS), Age, ETag,
 * and a Cache-Control mirroring the entry's windows, so a CDN or browser in front keeps no
 * more than the edge cache itself would.
 */
export function setCacheHeaders(c: Context, result: CacheResult<unknown>): void {
  c.header("X-Cache", result.status);
  c.header("Age", String(Math.floor(result.ageMs / 1000)));
  if (result.version !== null) c.header("ETag", etagOf(result.version));
  const fresh = Math.floor(result.ttlMs / 1000);
  const grace = Math.max(0, Math.floor((result.staleTtlMs - result.ttlMs) / 1000));
  if (result.status === "BYPASS") c.header("Cache-Control", "private, no-cache");
  else if (result.status === "STALE")
    c.header("Cache-Control", `public, max-age=0, stale-while-revalidate=${grace}`);
  else c.header("Cache-Control", `public, max-age=${fresh}, stale-while-revalidate=${grace}`);
}

/** A cached entity: 304 when If-None-Match matches its version, else the JSON with headers. */
export function cachedJson<T>(c: Context, result: CacheResult<T>): Response {
  setCacheHeaders(c, result);
  if (notModified(c, result.version)) return c.body(null, 304);
  return c.json(result.value as object, 200);
}
