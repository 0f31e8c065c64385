import type { Context, Env, Handler } from "hono";
import type { EdgeCache, EntryOptions } from "../cache";
import { engineOf, waitUntilOf } from "./middleware";
import { cachedJson, setCacheHeaders } from "./response";

export interface CacheJsonOptions<T, E extends Env, P extends string> {
  /** The cache key of this request, e.g. `(c) => \`item:${c.req.param("id")}\``. */
  key: (c: Context<E, P>) => string;
  /** Loads the value on a miss. `null` or `undefined` answers 404 (see `notFound`). */
  load: (c: Context<E, P>) => Promise<T>;
  /** Entry options (ttl, staleTtl, tags, versionKey…), fixed or per request. `waitUntil`
   * defaults to the request's `executionCtx.waitUntil`. */
  options?: EntryOptions<T> | ((c: Context<E, P>) => EntryOptions<T>);
  /** The engine; defaults to `c.var.edgecache` set by the `edgeCache` middleware. */
  cache?: (c: Context<E, P>) => EdgeCache;
  /** The response for a value that is `null`/`undefined`. Default: 404 with
   * `{"error":{"code":"not_found","message":…}}`. */
  notFound?: (c: Context<E, P>) => Response | Promise<Response>;
}

/**
 * A GET handler that answers a route's JSON through the engine: `getOrLoad` (single flight,
 * stale-while-revalidate, tags and versions as configured), then `X-Cache`, `Age`,
 * `Cache-Control`, an `ETag` and `304 Not Modified` (see `cachedJson`). A HIT costs one Redis
 * request; a MISS one before the loader and one fill after the response (in `waitUntil`).
 * Loader errors propagate to the app's `onError`; Redis faults never do (the loader's value is
 * answered with `X-Cache: BYPASS`).
 *
 * @example
 * ```ts
 * app.get(
 *   "/items/:id",
 *   cacheJson({
 *     key: (c) => `item:${c.req.param("id")}`,
 *     load: (c) => fetchItem(c.env, c.req.param("id")),
 *     options: { ttl: 60_000, staleTtl: 300_000, tags: ["items"] },
 *   }),
 * );
 * ```
 */
export function cacheJson<T, E extends Env = Env, P extends string = string>(
  route: CacheJsonOptions<T, E, P>,
): Handler<E, P> {
  return async (c) => {
    const cache = route.cache ? route.cache(c) : engineOf(c as unknown as Context);
    const options = typeof route.options === "function" ? route.options(c) : route.options;
    const waitUntil = options?.waitUntil ?? waitUntilOf(c as unknown as Context);
    const result = await cache.getOrLoad(route.key(c), () => route.load(c), {
      ...options,
      ...(waitUntil ? { waitUntil } : {}),
    });
    if (result.value === null || result.value === undefined) {
      setCacheHeaders(c as unknown as Context, result);
      if (route.notFound) return route.notFound(c);
      return c.json({ error: { code: "not_found", message: `${c.req.path} was not found` } }, 404);
    }
    return cachedJson(c as unknown as Context, result);
  };
}
