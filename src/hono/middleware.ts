import type { Context, Env, Input, MiddlewareHandler } from "hono";
import type { EdgeCache } from "../cache";
import { type AnyContext, plain } from "./context";

/** What {@link edgeCache} adds to the context: `c.var.edgecache`. */
export type EdgeCacheVariables = { edgecache: EdgeCache };

/**
 * Middleware that gives each request its own engine on `c.var.edgecache`. Engines are meant
 * to live for one request: concurrent loads of a key are coalesced within the request and
 * across requests by the Redis lease, and no promise is shared between requests. State that
 * should outlive a request (an `L1Cache`) is created at module scope and passed in.
 * Name the app's `Env` as the type argument so that `c.env` is typed.
 *
 * @example
 * ```ts
 * import { Redis } from "@upstash/redis/cloudflare";
 * import { EdgeCache } from "edgecache/cache";
 * import { edgeCache, type EdgeCacheVariables } from "edgecache/hono";
 *
 * type AppEnv = { Bindings: Bindings; Variables: EdgeCacheVariables };
 * const app = new Hono<AppEnv>();
 * // Bounded: one retry and a 1 s deadline per command, so Redis down means BYPASS, not a hang.
 * const redisOf = (env: Bindings) =>
 *   Redis.fromEnv(env, {
 *     retry: { retries: 1, backoff: () => 25 },
 *     signal: () => AbortSignal.timeout(1_000),
 *     enableAutoPipelining: false,
 *     responseEncoding: false,
 *   });
 * app.use(edgeCache<AppEnv>((c) => new EdgeCache({ redis: redisOf(c.env), prefix: "items" })));
 * app.post("/purge", async (c) => c.json(await c.var.edgecache.invalidateTags("items")));
 * ```
 */
export function edgeCache<E extends Env = Env>(
  create: (c: Context<E>) => EdgeCache,
): MiddlewareHandler<E> {
  return async (c, next) => {
    (plain(c) as Context<{ Variables: EdgeCacheVariables }>).set("edgecache", create(c));
    await next();
  };
}

/**
 * The request's engine, set by {@link edgeCache}; throws an error naming the fix when the
 * middleware is missing.
 *
 * @example
 * ```ts
 * app.delete("/items/:id/cache", async (c) =>
 *   c.json({ removed: await engineOf(c).invalidate(`item:${c.req.param("id")}`) }),
 * );
 * ```
 */
export function engineOf<E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
): EdgeCache {
  const cache = (plain(c) as Context<{ Variables: Partial<EdgeCacheVariables> }>).get("edgecache");
  if (!cache) {
    throw new Error(
      "edgecache: no engine on this request. Add app.use(edgeCache((c) => new EdgeCache(...))) before the route, or pass `cache` to cacheJson().",
    );
  }
  return cache;
}

/**
 * `ctx.waitUntil` of the request when there is one (Workers), so that fills and refreshes run
 * after the response; `undefined` elsewhere (Node, tests), where the engine awaits fills inline.
 *
 * @example
 * ```ts
 * await cache.getOrLoad(key, load, { waitUntil: waitUntilOf(c) });
 * ```
 */
export function waitUntilOf<E extends Env, P extends string, I extends Input>(
  c: AnyContext<E, P, I>,
): ((promise: Promise<unknown>) => void) | undefined {
  let ctx: { waitUntil(promise: Promise<unknown>): void } | undefined;
  try {
    ctx = plain(c).executionCtx;
  } catch {
    return undefined; // Hono throws when the runtime gave it no execution context.
  }
  return ctx ? (promise) => ctx.waitUntil(promise) : undefined;
}
