import type { Env, Input } from "hono";
import type { CacheResult } from "../cache";
import { type AnyContext, plain } from "./context";

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
 * await contentEtag('{"id":1}'); // '"…"': 32 hex digits in quotes
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
 * app.get("/stats", async (c) => {
 *   const result = await c.var.edgecache.getOrLoad("stats", loadStats, { ttl: 10_000 });
 *   setCacheHeaders(c, result);
 *   return c.json(result.value);
 * });
 * ```
 */
export function setCacheHeaders<E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
  result: CacheResult<unknown>,
): void {
  const ctx = plain(c);
  ctx.header("X-Cache", result.status);
  ctx.header("Age", String(Math.floor(result.ageMs / 1000)));
  const fresh = Math.floor(result.ttlMs / 1000);
  const grace = Math.max(0, Math.floor((result.staleTtlMs - result.ttlMs) / 1000));
  if (result.status === "BYPASS") ctx.header("Cache-Control", "private, no-cache");
  else if (result.status === "STALE")
    ctx.header("Cache-Control", `public, max-age=0, stale-while-revalidate=${grace}`);
  else ctx.header("Cache-Control", `public, max-age=${fresh}, stale-while-revalidate=${grace}`);
}

/**
 * Answers a cache result as JSON: the cache headers, an ETag (the entry's version when it has
 * one, else a hash of the body), and `304 Not Modified` without a body when a GET or HEAD
 * names that ETag in If-None-Match.
 *
 * @example
 * ```ts
 * app.get("/items/:id", async (c) => {
 *   const id = c.req.param("id");
 *   const result = await c.var.edgecache.getOrLoad(`item:${id}`, () => fetchItem(id), {
 *     versionKey: `item:${id}`,
 *     versionOf: (item) => item.version, // ETag "v<version>"
 *   });
 *   return cachedJson(c, result);
 * });
 * ```
 */
export async function cachedJson<E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
  result: CacheResult<unknown>,
): Promise<Response> {
  const ctx = plain(c);
  setCacheHeaders(ctx, result);
  const body = JSON.stringify(result.value);
  const etag = result.version === null ? await contentEtag(body) : etagOf(result.version);
  ctx.header("ETag", etag);
  const method = ctx.req.method;
  if (
    (method === "GET" || method === "HEAD") &&
    matchesEtag(ctx.req.header("if-none-match"), etag)
  ) {
    return ctx.body(null, 304);
  }
  return ctx.body(body, 200, { "Content-Type": "application/json; charset=UTF-8" });
}
