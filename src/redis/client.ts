import { Redis } from "@upstash/redis/cloudflare";

export interface RedisConfig {
  url: string;
  token: string;
}

/**
 * One Upstash client per request context. Everything but retries is the client's default,
 * so the same code talks to Upstash in production and to tools/upstash-gateway locally.
 * Retries are bounded because the cache must fail fast and fall back to Postgres:
 * the library default (5 retries, exponential backoff) can hold a response for seconds.
 */
export function createRedis(cfg: RedisConfig): Redis {
  return new Redis({
    url: cfg.url,
    token: cfg.token,
    enableTelemetry: false,
    retry: { retries: 1, backoff: () => 25 },
  });
}

export type { Redis };
