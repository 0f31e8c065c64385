import type { Env, Input } from "hono";
import type { CacheResult } from "../cache";
import { type AnyContext, plain } from "./context";

/**
 * HTTP validators and freshness for cached JSON, on the same rules as the edgecache app
 * (README "HTTP caching"). An ETag must change whenever any byte of the body changes, or a
 * client holding an old copy gets 304s for it forever. Three validators:
 * - `version`: `"v7"`, only when the version covers the whole body (a row that is its own
 *   representation, bumped by every write) and no deploy ever changes how the row is
 *   serialised: a release that adds or renames a field changes the body, not the version;
 * - `version+content`: `"v7.<digest>"`, the default for versioned entries: also right when the
 *   body embeds other data;
 * - `content`: `"c.<digest>"`, the default for unversioned entries (lists, aggregates).
 * The digest is SHA-256 over the JSON sent, truncated to 96 bits: a 304 from a HIT costs the
 * one Redis read and no loader call.
 */
export type Validator = "version" | "version+content" | "content";

/** Who may store the response: any cache (`shared`) or only the client's (`private`). */
export type Audience = "shared" | "private";

/** How {@link cachedJson} answers: the validator, and who may keep a copy. */
export interface CachedJsonOptions {
  /** Default `version+content`. A result without a version always gets `content`. */
  validator?: Validator;
  /** Default `shared`. `private` for personal data. */
  audience?: Audience;
  /** Overrides the `Cache-Control` header, e.g. `public, max-age=60` where a minute of
   * staleness in browsers and CDNs is acceptable. */
  cacheControl?: string;
}

/**
 * Strong ETag from a version alone.
 *
 * @example
 * ```ts
 * etagOf(7); // '"v7"'
 * ```
 */
export const etagOf = (version: number): string => `"v${version}"`;

const encoder = new TextEncoder();

/**
 * 96 bits of SHA-256 over `text`, base64url (16 characters); ~2^-96 collision chance per pair.
 *
 * @example
 * ```ts
 * await digest('{"id":1}'); // 16 characters of [A-Za-z0-9_-]
 * ```
 */
export async function digest(text: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
  let binary = "";
  for (const byte of hash.subarray(0, 12)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}

/**
 * The ETag of a JSON body under a validator; `null` for a version validator without a version.
 *
 * @example
 * ```ts
 * await etagFor("version+content", 7, JSON.stringify(item)); // '"v7.Qm9yZWQ_IGl0IGlz"'
 * await etagFor("content", null, JSON.stringify(page));       // '"c.…"'
 * ```
 */
export async function etagFor(
  validator: Validator,
  version: number | null,
  json: string,
): Promise<string | null> {
  if (validator === "content") return `"c.${await digest(json)}"`;
  if (version === null) return null;
  if (validator === "version") return etagOf(version);
  return `"v${version}.${await digest(json)}"`;
}

/**
 * True when an If-None-Match header names `etag` (or is `*`). Weak comparison (RFC 9110
 * §13.1.2): `W/` is ignored on both sides, since a compressing proxy may weaken a strong tag.
 *
 * @example
 * ```ts
 * matchesEtag('W/"v6", "v7"', '"v7"'); // true
 * matchesEtag(undefined, '"v7"');      // false
 * ```
 */
export function matchesEtag(ifNoneMatch: string | undefined, etag: string | null): boolean {
  if (!ifNoneMatch || etag === null) return false;
  const ours = etag.replace(/^W\//, "");
  return ifNoneMatch
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .some((t) => t === ours || t === "*");
}

/**
 * True when an If-Match header names `etag` or is `*` (a representation exists). Strong
 * comparison (RFC 9110 §13.1.1): a weak tag never matches, nor does anything when the
 * response has no ETag.
 *
 * @example
 * ```ts
 * matchesStrongly('"v6", "v7"', '"v7"'); // true
 * matchesStrongly('W/"v7"', '"v7"');     // false
 * ```
 */
export function matchesStrongly(ifMatch: string, etag: string | null): boolean {
  return ifMatch
    .split(",")
    .map((t) => t.trim())
    .some((t) => t === "*" || (etag !== null && !etag.startsWith("W/") && t === etag));
}

/**
 * `Cache-Control` of mutable data: any cache may keep a copy but must revalidate it before
 * each use (`no-cache`), so nobody is shown data older than a write already acknowledged to
 * them, and the revalidation is a 304 answered from Redis. `private` keeps personal data out
 * of shared caches (CDNs, proxies).
 *
 * @example
 * ```ts
 * cacheControlFor("shared");  // "no-cache"
 * cacheControlFor("private"); // "private, no-cache"
 * ```
 */
export const cacheControlFor = (audience: Audience): string =>
  audience === "private" ? "private, no-cache" : "no-cache";

/**
 * Diagnostics for a cached response: `X-Cache` (HIT | STALE | MISS | BYPASS), `Age` (seconds
 * since the entry was written) and `X-Cache-Fail-Safe: 1` when the loader failed and an entry
 * kept for fail-safe was served. {@link cachedJson} sets them itself; use this for responses
 * you build yourself.
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
  // Served from fail-safe: the source failed and this is an entry past its grace window.
  if (result.failSafe) ctx.header("X-Cache-Fail-Safe", "1");
}

/**
 * Answers a cache result as JSON: `X-Cache`, `Age`, `ETag` and `Cache-Control`, and
 * `304 Not Modified` without a body when a GET or HEAD names the current ETag in If-None-Match.
 *
 * @example
 * ```ts
 * app.get("/items/:id", async (c) => {
 *   const id = c.req.param("id");
 *   const result = await c.var.edgecache.getOrLoad(`item:${id}`, () => fetchItem(id), {
 *     versionKey: `item:${id}`,
 *     versionOf: (item) => item.version,
 *   });
 *   return cachedJson(c, result); // ETag "v<version>.<digest>"
 * });
 * ```
 */
export async function cachedJson<E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
  result: CacheResult<unknown>,
  options: CachedJsonOptions = {},
): Promise<Response> {
  const ctx = plain(c);
  setCacheHeaders(ctx, result);
  ctx.header(
    "Cache-Control",
    options.cacheControl ?? cacheControlFor(options.audience ?? "shared"),
  );
  const json = JSON.stringify(result.value);
  // A version validator needs a version: without one (an unversioned entry, a BYPASS whose
  // versionOf failed) the content's digest stands in, so the answer always has an ETag.
  const validator = result.version === null ? "content" : (options.validator ?? "version+content");
  const etag = await etagFor(validator, result.version, json);
  if (etag) ctx.header("ETag", etag);
  const method = ctx.req.method;
  if (method === "GET" || method === "HEAD") {
    // RFC 9110 §13.2.2: If-Match first (a client asking for this representation only if it is
    // still the one it holds, e.g. before resuming a download), then If-None-Match.
    const ifMatch = ctx.req.header("if-match");
    if (ifMatch !== undefined && !matchesStrongly(ifMatch, etag)) {
      ctx.header("Cache-Control", "no-store");
      return ctx.json(
        {
          error: {
            code: "precondition_failed",
            message:
              "If-Match does not name the current representation (its ETag is in the ETag header)",
          },
        },
        412,
      );
    }
    if (matchesEtag(ctx.req.header("if-none-match"), etag)) return ctx.body(null, 304);
  }
  return ctx.body(json, 200, { "Content-Type": "application/json" });
}
