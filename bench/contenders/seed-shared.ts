/**
 * What the seed's two contenders share: key-by-key deletion for contenders without tags (the
 * application must know the group's keys), and the seed's read-through shape around a check.
 */
import type { Redis } from "@upstash/redis";
import type { Row } from "../lib/db";
import type { Contender, ContenderEnv } from "../lib/types";

export const DEL_CHUNK = 1000;

/** DEL in chunks of DEL_CHUNK keys, one request each, sequentially (bounded request size). */
export async function deleteKeys(redis: Redis, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += DEL_CHUNK) {
    await redis.del(...keys.slice(i, i + DEL_CHUNK));
  }
}

/**
 * The seed's cache as written: `lookup` answers the cached row when it may be served (or
 * null); otherwise load and SET with EX 300. A write DELs the key; a group DELs key by key.
 *
 * @example
 * seedCache(env, (redis, key) => redis.get<Row>(key)); // plain cache-aside
 */
export function seedCache(
  env: ContenderEnv,
  lookup: (redis: Redis, cacheKey: string, key: string) => Promise<Row | null>,
): Contender {
  const redis = env.upstash();
  const k = (key: string) => `${env.prefix}:${key}`;
  return {
    async get(key, load) {
      const cached = await lookup(redis, k(key), key);
      if (cached) return cached;
      const row = await load();
      await redis.set(k(key), row, { ex: 300 });
      return row;
    },
    async write(key) {
      await redis.del(k(key));
    },
    invalidateGroup: (_tag, keys) => deleteKeys(redis, keys.map(k)),
    settle: async () => undefined,
    close: async () => undefined,
  };
}
