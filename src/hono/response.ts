import type { Context } from "hono";
import type { CacheResult } from "../cache";

/**
 * Strong ETag from an entry version.
 *
 * @example
 * ```ts
 * etagOf(7); // '"v7"'
 * ```
 */
export const etagOf = (version: number): string => `"v${version}"`;

/**
 * Strong ETag from a serialised body: the first 16 bytes of its SHA-256, in hex. Used for
 * entries without a version, so a client can still revalidate them with If-None-Match.
 *
 * @example
 * ```ts
 * await contentEtag('{"id":1}'); // '"c7c3…"' (34 characters)
 * ```
 */
export async function contentEtag(body: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
  const hex = Array.from(new Uint8Array(digest).subarray(0, 16), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
  return `"${hex}"`;
}

/**
 * True when an If-None-Match header names `etag` (or is `*`). The comparison is the weak one
 * RFC 9110 prescribes for If-None-Match, so `W/"v7"` matches `"v7"`.
 *
 * @example
 * ```ts
 * matchesEtag('W/"v6", "v7"', '"v7"'); // true
 * matchesEtag(undefined, '"v7"');      // false
 * ```
 */
export function matchesEtag(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === "*") return true;
  const wanted = etag.replace(/^W\//, "");
  const listed: string[] = ifNoneMatch.match(/"[^"]*"/g) ?? [];
  return listed.includes(wanted);
}

/**
 * Sets the headers every cached response carries: `X-Cache` (HIT | STALE | MISS | BYPASS),
 * `Age`, and a `Cache-Control` mirroring the entry's windows, so a CDN or browser in front
 * keeps a value no longer than the edge cache itself would. A BYPASS (Redis unreachable) is
 * `private, no-cache`. The ETag is left to the caller (see {@link cachedJson}).
 *
 * @example
 * ```ts
 * const result = await cache.getOrLoad("item:1", load);
 * setCacheHeaders(c, result);
 * return c.json(result.value);
 * ```
 */
export function setCacheHeaders(c: Context, result: CacheResult<unknown>): void {
  c.header("X-Cache", result.status);
  c.header("Age", String(Math.floor(result.ageMs / 1000)));
  const fresh = Math.floor(result.ttlMs / 1000);
  const grace = Math.max(0, Math.floor((result.staleTtlMs - result.ttlMs) / 1000));
  if (result.status === "BYPASS") c.header("Cache-Control", "private, no-cache");
  else if (result.status === "STALE")
    c.header("Cache-Control", `public, max-age=0, stale-while-revalidate=${grace}`);
  else c.header("Cache-Control", `public, max-age=${fresh}, stale-while-revalidate=${grace}`);
}

/**
 * Answers a cache result as JSON: the cache headers, an ETag (the entry's version when it has
 * one, else a hash of the body), and `304 Not Modified` without a body when the request's
 * If-None-Match names that ETag.
 *
 * @example
 * ```ts
 * app.get("/items/:id", async (c) => {
 *   const result = await c.var.edgecache.getOrLoad(`item:${c.req.param("id")}`, load);
 *   return cachedJson(c, result);
 * });
 * ```
 */
export async function cachedJson(c: Context, result: CacheResult<unknown>): Promise<Response> {
  setCacheHeaders(c, result);
  const body = JSON.stringify(result.value);
  const etag = result.version === null ? await contentEtag(body) : etagOf(result.version);
  c.header("ETag", etag);
  const method = c.req.method;
  if ((method === "GET" || method === "HEAD") && matchesEtag(c.req.header("if-none-match"), etag)) {
    return c.body(null, 304);
  }
  return c.body(body, 200, { "Content-Type": "application/json; charset=UTF-8" });
}
