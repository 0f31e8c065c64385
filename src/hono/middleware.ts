import type { Context, Env, MiddlewareHandler } from "hono";
import type { EdgeCache } from "../cache";

/** What {@link edgeCache} adds to the context: `c.var.edgecache`. */
export type EdgeCacheVariables = { edgecache: EdgeCache };

/**
 * Middleware that gives each request its own engine on `c.var.edgecache`. Engines are meant
 * to live for one request: concurrent loads of a key are coalesced within the request and
 * across requests by the Redis lease, and a promise is never shared between requests. Long-lived
 * state (an `L1Cache`, the client-side counters) is kept at module scope by the engine itself.
 *
 * @example
 * ```ts
 * import { EdgeCache } from "edgecache/cache";
 * import { edgeCache, type EdgeCacheVariables } from "edgecache/hono";
 * import { Redis } from "@upstash/redis/cloudflare";
 *
 * const app = new Hono<{ Bindings: Bindings; Variables: EdgeCacheVariables }>();
 * app.use(edgeCache((c) => new EdgeCache({ redis: Redis.fromEnv(c.env), prefix: "items" })));
 * app.post("/purge", async (c) => c.json(await c.var.edgecache.invalidateTags("items")));
 * ```
 */
export function edgeCache<E extends Env = Env>(
  create: (c: Context<E>) => EdgeCache,
): MiddlewareHandler<E & { Variables: EdgeCacheVariables }> {
  return async (c, next) => {
    c.set("edgecache", create(c as unknown as Context<E>));
    await next();
  };
}

/** The request's engine, set by {@link edgeCache}; a clear error when the middleware is missing. */
export function engineOf(c: Context): EdgeCache {
  const cache = (c as Context<{ Variables: Partial<EdgeCacheVariables> }>).get("edgecache");
  if (!cache) {
    throw new Error(
      "edgecache: no engine on this request. Add app.use(edgeCache((c) => new EdgeCache(...))) before the route, or pass `cache` to cacheJson().",
    );
  }
  return cache;
}

/**
 * `ctx.waitUntil` of the request when there is one (Workers), so fills and refreshes run after
 * the response; undefined elsewhere (Node, tests), where the engine awaits them inline.
 */
export function waitUntilOf(c: Context): ((promise: Promise<unknown>) => void) | undefined {
  let ctx: { waitUntil(promise: Promise<unknown>): void } | undefined;
  try {
    ctx = c.executionCtx;
  } catch {
    return undefined; // Hono throws when the runtime gave it no execution context.
  }
  return ctx ? (promise) => ctx.waitUntil(promise) : undefined;
}
