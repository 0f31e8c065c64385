import type { Context } from "hono";
import type { CacheResult } from "../cache";
import { errorResponse } from "./errors";

/**
 * HTTP validators and freshness for cached representations.
 *
 * A validator must change whenever any byte of the representation changes, or a client holding
 * an old copy gets a 304 and keeps it forever. Three kinds, chosen per resource:
 * - `version`: `"v7"`, for rows that are their whole representation (categories, users): every
 *   write bumps the version in the same UPDATE.
 * - `version+content`: `"v7.<digest>"`, for a row that embeds another (a product embeds its
 *   category): the digest of the body changes with the embedded part, and the `v7` prefix is
 *   what If-Match on a write is conditioned on (see `versionCondition` in schemas.ts).
 * - `content`: `"c.<digest>"`, for lists: any change of an item, of the page boundaries or of
 *   the cursor changes the body.
 * The digest is SHA-256 over the JSON sent, truncated to 96 bits, computed in the isolate: a 304
 * from a cache HIT costs the one Redis read and no Postgres query. A tag bump that leaves the
 * body byte-identical keeps the validator, which is right: nothing the client holds changed.
 */
export type Validator = "version" | "version+content" | "content";

/** Who may store the response: shared caches (CDN) or only the client (personal data). */
export type Audience = "shared" | "private";

/** Strong ETag from an entity version: `"v7"` (412 answers, categories, users). */
export const etagOf = (version: number) => `"v${version}"`;

const encoder = new TextEncoder();

/** 96 bits of SHA-256 over `text`, base64url (16 characters). Collisions: ~2^-96 per pair. */
export async function digest(text: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
  let binary = "";
  for (const byte of hash.subarray(0, 12)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}

/**
 * The ETag of a JSON representation.
 *
 * @example
 * await etagFor("version+content", 7, JSON.stringify(product)) // '"v7.Qm9yZWQ_IGl0IGlz"'
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
 * True when If-None-Match names `etag` (or is `*`). Weak comparison (RFC 9110 §13.1.2): a
 * `W/` prefix is ignored on both sides, since an intermediary that compresses the body may
 * weaken a strong tag (Cloudflare does so for compressed responses).
 */
export function ifNoneMatch(c: Context, etag: string | null): boolean {
  const header = c.req.header("if-none-match");
  if (!header || etag === null) return false;
  const ours = etag.replace(/^W\//, "");
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .some((t) => t === ours || t === "*");
}

/**
 * `Cache-Control` of mutable data: any cache may keep a copy but must revalidate it on every
 * use (`no-cache`), so no client shows data older than a write it already saw acknowledged; the
 * revalidation is a 304 answered from Redis. Personal data adds `private` so no shared cache
 * (CDN, corporate proxy) stores it.
 */
export const cacheControlFor = (audience: Audience) =>
  audience === "private" ? "private, no-cache" : "no-cache";

/** Diagnostics every cached response carries: where it came from, and how old the entry is. */
export function setCacheHeaders(c: Context, result: CacheResult<unknown>): void {
  c.header("X-Cache", result.status);
  // Served from fail-safe: the source failed and this is an entry past its grace window.
  if (result.failSafe) c.header("X-Cache-Fail-Safe", "1");
  c.header("Age", String(Math.floor(result.ageMs / 1000)));
}

/**
 * A cached representation: 304 when If-None-Match names its current ETag, else the JSON, with
 * X-Cache, Age, ETag and Cache-Control on both.
 *
 * @example
 * return cachedJson(c, await readProduct(cache, db, id), { validator: "version+content" });
 */
export async function cachedJson<T>(
  c: Context,
  result: CacheResult<T>,
  options: { validator: Validator; audience?: Audience },
): Promise<Response> {
  setCacheHeaders(c, result);
  c.header("Cache-Control", cacheControlFor(options.audience ?? "shared"));
  const json = JSON.stringify(result.value);
  const etag = await etagFor(options.validator, result.version, json);
  if (etag) c.header("ETag", etag);
  if (ifNoneMatch(c, etag)) return c.body(null, 304);
  c.header("Content-Type", "application/json");
  return c.body(json, 200);
}

/** The JSON of a write's result with its ETag (same validator as the GET) and `no-store`. */
export async function writtenJson(
  c: Context,
  value: { version: number },
  status: 200 | 201,
  validator: Validator,
): Promise<Response> {
  const json = JSON.stringify(value);
  const etag = await etagFor(validator, value.version, json);
  if (etag) c.header("ETag", etag);
  c.header("Cache-Control", "no-store");
  c.header("Content-Type", "application/json");
  return c.body(json, status);
}

/**
 * 404 for an id that does not exist, with X-Cache so a client (and a test) can tell a cached
 * absence (HIT: no Postgres query) from a looked-up one. `no-store`: an absence must not outlive
 * the create that ends it in any cache but ours, whose negative entry the create invalidates.
 */
export function notFound(c: Context, result: CacheResult<unknown>, what: string): Response {
  setCacheHeaders(c, result);
  c.header("Cache-Control", "no-store");
  return errorResponse(c, 404, "not_found", `No ${what}`);
}
