import { EdgeCache } from "../cache";
import { type AppConfig, type Env, loadConfig } from "../config/env";
import { createDb } from "../db/neon";
import { createRedis, type Redis } from "../redis/client";

type Database = ReturnType<typeof createDb>;
export type Db = Database["db"];

/** The slice of ExecutionContext the services need (tests pass their own). */
export interface Background {
  waitUntil(promise: Promise<unknown>): void;
}

/**
 * What one invocation (request, cron tick, queue batch) needs, created lazily:
 * a route that never touches Postgres opens no WebSocket. Workers cannot share sockets
 * across requests, so the Postgres pool lives and dies with the invocation.
 */
export interface Services {
  readonly config: AppConfig;
  readonly redis: Redis;
  readonly db: Db;
  readonly cache: EdgeCache;
  readonly queue: Queue<unknown> | undefined;
  /** Runs work after the response (ctx.waitUntil); errors are logged, never thrown. */
  background(work: Promise<unknown>, what: string): void;
  /** Closes what was opened; call it in `ctx.waitUntil` so it stays off the response path. */
  dispose(): Promise<void>;
}

export function createServices(env: Env, ctx?: Background): Services {
  const config = loadConfig(env);
  let redis: Redis | undefined;
  let database: Database | undefined;
  let cache: EdgeCache | undefined;
  const pending: Promise<unknown>[] = [];
  const background = (work: Promise<unknown>, what: string) => {
    const guarded = work.catch((error: unknown) => console.error(`${what} failed:`, error));
    // Tracked even under waitUntil: dispose() must not close the pool under a running query.
    pending.push(guarded);
    ctx?.waitUntil(guarded);
  };
  const services: Services = {
    config,
    queue: env.PURGE_QUEUE,
    background,
    get redis() {
      redis ??= createRedis({
        url: config.UPSTASH_REDIS_REST_URL,
        token: config.UPSTASH_REDIS_REST_TOKEN,
        timeoutMs: config.REDIS_TIMEOUT_MS,
      });
      return redis;
    },
    get db() {
      database ??= createDb({
        databaseUrl: config.DATABASE_URL,
        wsProxy: config.NEON_WS_PROXY,
        deadlines: {
          connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
          queryTimeoutMs: config.DB_QUERY_TIMEOUT_MS,
        },
      });
      return database.db;
    },
    get cache() {
      cache ??= new EdgeCache({
        redis: services.redis,
        prefix: config.CACHE_PREFIX,
        defaults: {
          loaderBackoff: config.LOADER_BACKOFF_MS,
          ...(ctx ? { waitUntil: (p: Promise<unknown>) => ctx.waitUntil(p) } : {}),
        },
        onError: (error, operation) => console.warn(`cache ${operation} degraded:`, error),
      });
      return cache;
    },
    async dispose() {
      while (pending.length > 0) await Promise.all(pending.splice(0));
      await cache?.settle();
      const open = database;
      database = undefined;
      await open?.close();
    },
  };
  return services;
}
