/** Key-by-key deletion for contenders without tags: the application must know the group's keys. */
import type { Redis } from "@upstash/redis";

export const DEL_CHUNK = 1000;

/** DEL in chunks of DEL_CHUNK keys, one request each, sequentially (bounded request size). */
export async function deleteKeys(redis: Redis, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += DEL_CHUNK) {
    await redis.del(...keys.slice(i, i + DEL_CHUNK));
  }
}
