import { EdgeCache } from "../cache";
import type { ScriptClient } from "../cache/redis";
import { type AppConfig, type Env, loadConfig } from "../config/env";
import { createDb } from "../db/neon";
import { createRedis, type Redis } from "../redis/client";

type Database = ReturnType<typeof createDb>;
export type Db = Database["db"];

/** The slice of ExecutionContext the services need (tests pass their own). */
export interface Background {
  waitUntil(promise: Promise<unknown>): void;
}

/** What one invocation's services saw of Redis, for the outbox recovery trigger. */
export interface RedisContact {
  /** A cache script got an answer from Redis. */
  reached: boolean;
  /** A cache operation failed against Redis (read bypass, failed write or fill). */
  faulted: boolean;
}

/**
 * What one invocation (request, cron tick, queue batch) needs, created lazily:
 * a route that never touches Postgres opens no WebSocket. Workers cannot share sockets
 * across requests, so the Postgres pool lives and dies with the invocation.
 *
 * Lifecycle: every piece of background work of the invocation (the engine's fills and
 * SWR/XFetch refreshes, outbox marks, recovery drains) is started through `background`, and
 * `dispose` waits until none is left before it ends the pool. A refresh that runs after the
 * response therefore still has a live pool, and nothing opens a second one after it closed.
 */
export interface Services {
  readonly config: AppConfig;
  readonly redis: Redis;
  readonly db: Db;
  readonly cache: EdgeCache;
  /**
   * The same engine over a second Upstash client that auto-pipelines: calls issued together,
   * with no await in between, go as one request (one subrequest). For work that issues many
   * at once, like the warmer's write-throughs; `cache`'s client sends each call as it comes,
   * since a request's reads run one script at a time (`RedisConfig.autoPipelining`). Its
   * writes are not counted in `syncToken`: use it for cache fills, not for data writes a
   * response must cover.
   */
  readonly batchCache: EdgeCache;
  readonly queue: Queue<unknown> | undefined;
  /** Whether this invocation reached Redis, or saw it fail (see RedisContact). */
  readonly contact: RedisContact;
  /**
   * The Upstash client's sync position (`upstash-sync-token`) now: where it started
   * (`ServicesOptions.syncToken`) or the one its last answer carried. Undefined while no Redis
   * client was made (no Redis call yet).
   */
  readonly syncToken: string | undefined;
  /** Runs work after the response (ctx.waitUntil); errors are logged, never thrown. */
  background(work: Promise<unknown>, what: string): void;
  /**
   * Waits until no background work is left (work may start more work: it loops until
   * quiescent), then ends the pool. Call it in `ctx.waitUntil` so it stays off the response
   * path. Afterwards `db` throws instead of opening a pool nobody would close.
   */
  dispose(): Promise<void>;
}

/**
 * Pools opened and ended in this isolate, for tests that prove an invocation leaks none
 * (`opened - ended` returns to where it was once the invocation's waitUntil work is done).
 */
export const poolCounts = { opened: 0, ended: 0 };

export interface ServicesOptions {
  /**
   * The sync position the caller carries (an earlier response's `upstash-sync-token`): set on
   * the Upstash client before its first call, so every read waits for a replica that has
   * replicated at least this far (read-your-writes across requests).
   */
  syncToken?: string;
}

export function createServices(
  env: Env,
  ctx?: Background,
  options: ServicesOptions = {},
): Services {
  const config = loadConfig(env);
  let redis: Redis | undefined;
  let database: Database | undefined;
  let cache: EdgeCache | undefined;
  let batchCache: EdgeCache | undefined;
  let disposed = false;
  const contact: RedisContact = { reached: false, faulted: false };
  const pending = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown>): void => {
    // Tracked even under waitUntil: dispose() must not close the pool under a running query.
    pending.add(work);
    const done = () => pending.delete(work);
    work.then(done, done);
    ctx?.waitUntil(work);
  };
  const background = (work: Promise<unknown>, what: string) => {
    track(work.catch((error: unknown) => console.error(`${what} failed:`, error)));
  };
  /** Notes each answer and failure of the engine's scripts (nothing else changes). */
  const observed = (client: Redis): ScriptClient => {
    const watch = <T>(call: Promise<T>): Promise<T> =>
      call.then(
        (reply) => {
          contact.reached = true;
          return reply;
        },
        (error: unknown) => {
          // NOSCRIPT is an answer: the engine falls back to EVAL.
          if (/NOSCRIPT/.test(String(error))) contact.reached = true;
          else contact.faulted = true;
          throw error;
        },
      );
    // The *_RO forms too: without them the engine sends `consistency: "replica"` hits as plain
    // EVALSHA, which the primary serves (correct, but never a replica).
    return {
      evalsha: (sha, keys, args) => watch(client.evalsha(sha, keys, args)),
      eval: (script, keys, args) => watch(client.eval(script, keys, args)),
      evalshaRo: (sha, keys, args) => watch(client.evalshaRo(sha, keys, args)),
      evalRo: (script, keys, args) => watch(client.evalRo(script, keys, args)),
      // Replica reads coalesce only with requests at the same position (src/cache/context.ts).
      get readYourWritesSyncToken() {
        return client.readYourWritesSyncToken;
      },
    };
  };
  /** A client for this invocation, starting at the position the caller carries (read-your-writes). */
  const newClient = (autoPipelining: boolean): Redis => {
    const client = createRedis({
      url: config.UPSTASH_REDIS_REST_URL,
      token: config.UPSTASH_REDIS_REST_TOKEN,
      timeoutMs: config.REDIS_TIMEOUT_MS,
      autoPipelining,
    });
    if (options.syncToken) client.readYourWritesSyncToken = options.syncToken;
    return client;
  };
  const engineOver = (client: Redis) =>
    new EdgeCache({
      redis: observed(client),
      prefix: config.CACHE_PREFIX,
      // The engine's background work (fills, refreshes) goes through the same tracking as
      // everything else, so dispose() waits for it before ending the pool.
      defaults: {
        loaderBackoff: config.LOADER_BACKOFF_MS,
        // The loaders are Postgres queries, each under its own deadlines; this one is their
        // sum plus a margin. It keeps a slow query's lease alive while it runs and makes the
        // waiters wait for it (read/keep-alive.ts): one query per key when Postgres is slow,
        // not one per request.
        loadTimeout: config.DB_CONNECT_TIMEOUT_MS + config.DB_QUERY_TIMEOUT_MS + 1_000,
        ...(ctx ? { waitUntil: track } : {}),
      },
      onError: (error, operation) => console.warn(`cache ${operation} degraded:`, error),
    });
  const services: Services = {
    config,
    queue: env.PURGE_QUEUE,
    contact,
    background,
    get redis() {
      redis ??= newClient(false);
      return redis;
    },
    get syncToken() {
      return redis?.readYourWritesSyncToken;
    },
    get db() {
      if (disposed) {
        throw new Error(
          "services disposed: background work must be started with services.background (or the engine's waitUntil) so dispose waits for it",
        );
      }
      if (!database) {
        database = createDb({
          databaseUrl: config.DATABASE_URL,
          wsProxy: config.NEON_WS_PROXY,
          deadlines: {
            connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
            queryTimeoutMs: config.DB_QUERY_TIMEOUT_MS,
            breakerMs: config.DB_BREAKER_MS,
          },
        });
        poolCounts.opened++;
      }
      return database.db;
    },
    get cache() {
      cache ??= engineOver(services.redis);
      return cache;
    },
    get batchCache() {
      batchCache ??= engineOver(newClient(true));
      return batchCache;
    },
    async dispose() {
      // Quiescent = nothing tracked and nothing the engine holds for settle(); each wait can
      // start more work (a refresh's fill, a drain's mark), hence the loop.
      for (;;) {
        if (pending.size > 0) {
          await Promise.allSettled([...pending]);
          continue;
        }
        await cache?.settle();
        await batchCache?.settle();
        if (pending.size === 0) break;
      }
      disposed = true;
      const open = database;
      database = undefined;
      if (open) {
        await open.close();
        poolCounts.ended++;
      }
    },
  };
  return services;
}
