import type { Env, Input } from "hono";
import type { CacheResult, EdgeCache, EntryOptions } from "../cache";
import { assertName, InvalidKeyError } from "../cache/keys";
import { type AnyContext, plain } from "./context";
import { engineOf, waitUntilOf } from "./middleware";
import { type CachedJsonOptions, cachedJson, setCacheHeaders } from "./response";

/** What {@link cacheJson} caches and how it answers (validator, audience: see `cachedJson`). */
export interface CacheJsonOptions<T> extends CachedJsonOptions {
  /** The cache key, e.g. `item:${c.req.param("id")}` (1–512 characters, no whitespace or
   * `* ? [ ] \`). An invalid one answers `400` with `{"error":{"code":"invalid_key",…}}`
   * before any request: it comes from the client's URL. */
  key: string;
  /** Loads the value on a miss. `null` or `undefined` answers 404 (see `notFound`). Its
   * `signal` is aborted past `options.loadTimeout`: pass it to `fetch`. */
  load: (signal?: AbortSignal) => Promise<T>;
  /** Entry options (ttl, staleTtl, tags, versionKey…). `waitUntil` defaults to the
   * request's `executionCtx.waitUntil`. */
  options?: EntryOptions<T>;
  /** The engine; defaults to `c.var.edgecache`, set by the `edgeCache` middleware. */
  cache?: EdgeCache;
  /** The response for a `null`/`undefined` value. Default: 404 with
   * `{"error":{"code":"not_found","message":…}}` and `Cache-Control: no-store` (an absence
   * must not outlive, in any other cache, the create that ends it). */
  notFound?: () => Response | Promise<Response>;
}

/**
 * Answers a route's JSON through the engine: `getOrLoad` (single flight across isolates,
 * stale-while-revalidate, tags and versions as configured), then `X-Cache`, `Age`,
 * `Cache-Control`, an `ETag` and `304 Not Modified` (see `cachedJson`; `validator`,
 * `audience` and `cacheControl` are passed on to it). A HIT costs one Redis
 * request; a MISS one before the loader and one fill after the response (in `waitUntil`).
 * Loader errors propagate to the app's `onError`; Redis faults never do: the loader's value
 * is answered with `X-Cache: BYPASS`.
 *
 * @example
 * ```ts
 * app.get("/items/:id", (c) =>
 *   cacheJson(c, {
 *     key: `item:${c.req.param("id")}`,
 *     load: () => fetchItem(c.env, c.req.param("id")),
 *     options: { ttl: 60_000, staleTtl: 300_000, tags: ["items"] },
 *   }),
 * );
 * ```
 */
export async function cacheJson<T, E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
  route: CacheJsonOptions<T>,
): Promise<Response> {
  const ctx = plain(c);
  // The key is built from the request (a path parameter): a name the cache refuses
  // (whitespace, `* ? [ ] \`, over 512 characters) is the client's input, not a server fault.
  try {
    assertName("key", route.key);
  } catch (error) {
    if (!(error instanceof InvalidKeyError)) throw error;
    ctx.header("Cache-Control", "no-store");
    return ctx.json({ error: { code: "invalid_key", message: error.message } }, 400);
  }
  const cache = route.cache ?? engineOf(ctx);
  const waitUntil = route.options?.waitUntil ?? waitUntilOf(ctx);
  const result = await cache.getOrLoad(route.key, route.load, {
    ...route.options,
    ...(waitUntil ? { waitUntil } : {}),
  });
  if (result.value === null || result.value === undefined) {
    setCacheHeaders(ctx, result);
    if (route.notFound) return withCacheHeaders(await route.notFound(), result);
    ctx.header("Cache-Control", "no-store");
    return ctx.json(
      { error: { code: "not_found", message: `${ctx.req.path} was not found` } },
      404,
    );
  }
  return cachedJson(ctx, result, route);
}

/**
 * `notFound`'s response with `X-Cache` and `Age` (and `X-Cache-Fail-Safe`) as every answer has
 * them: one built with `c.json` has them already, a `new Response(...)` had none.
 */
function withCacheHeaders(res: Response, result: CacheResult<unknown>): Response {
  if (res.headers.has("X-Cache")) return res;
  const headers = new Headers(res.headers);
  headers.set("X-Cache", result.status);
  headers.set("Age", String(Math.floor(result.ageMs / 1000)));
  if (result.failSafe) headers.set("X-Cache-Fail-Safe", "1");
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}
