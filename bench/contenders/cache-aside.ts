/**
 * The seed's plain cache-aside, as written: GET; on a miss load and SET with EX; on a write DEL.
 * No lease, no version check: a slow load that began before a write can SET the old row after
 * the DEL (a stale set), and concurrent misses all load.
 */
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";
import { deleteKeys } from "./seed-shared";

export const cacheAside: ContenderModule = {
  id: "cache-aside",
  label: "seed: cache-aside + DEL",
  groupHow: "no tags: DEL of the group's keys (app-kept list), 1,000 per request",
  viaGateway: true,
  async create(env) {
    const redis = env.upstash();
    const k = (key: string) => `${env.prefix}:${key}`;
    return {
      async get(key, load) {
        const cached = await redis.get<Row>(k(key));
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
  },
};
