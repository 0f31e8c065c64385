/**
 * The seed's version-checked read, as written: GET the cached row and ask the database for the
 * row's current version (both at once, its best case); serve the cached row only when the
 * versions match, else load and SET. Writes DEL. Never serves an old version, at the price of a
 * database query on every read, hits included.
 */
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";
import { deleteKeys } from "./seed-shared";

export const versionChecked: ContenderModule = {
  id: "version-checked",
  label: "seed: version-checked read",
  groupHow:
    "no tags (row versions do not move for a group change): DEL key by key like cache-aside",
  viaGateway: true,
  async create(env) {
    const redis = env.upstash();
    const k = (key: string) => `${env.prefix}:${key}`;
    return {
      async get(key, load) {
        const [cached, version] = await Promise.all([redis.get<Row>(k(key)), env.db.version(key)]);
        if (cached && cached.version === version) return cached;
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
