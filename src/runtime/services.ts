import { type AppConfig, type Env, loadConfig } from "../config/env";
import { createDb } from "../db/neon";
import { createRedis, type Redis } from "../redis/client";

type Database = ReturnType<typeof createDb>;

/**
 * What one invocation (request, cron tick, queue batch) needs, created lazily:
 * a route that never touches Postgres opens no WebSocket. Workers cannot share sockets
 * across requests, so the Postgres pool lives and dies with the invocation.
 */
export interface Services {
  readonly config: AppConfig;
  readonly redis: Redis;
  readonly db: Database["db"];
  /** Closes what was opened; call it in `ctx.waitUntil` so it stays off the response path. */
  dispose(): Promise<void>;
}

export function createServices(env: Env): Services {
  const config = loadConfig(env);
  let redis: Redis | undefined;
  let database: Database | undefined;
  return {
    config,
    get redis() {
      redis ??= createRedis({
        url: config.UPSTASH_REDIS_REST_URL,
        token: config.UPSTASH_REDIS_REST_TOKEN,
      });
      return redis;
    },
    get db() {
      database ??= createDb({ databaseUrl: config.DATABASE_URL, wsProxy: config.NEON_WS_PROXY });
      return database.db;
    },
    async dispose() {
      const open = database;
      database = undefined;
      await open?.close();
    },
  };
}
