/**
 * The seed's version-checked read, as written: GET the cached row and ask the database for the
 * row's current version (both at once, its best case); serve the cached row only when the
 * versions match, else load and SET. Writes DEL. Never serves an old version, at the price of a
 * database query on every read, hits included.
 */
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";
import { seedCache } from "./seed-shared";

export const versionChecked: ContenderModule = {
  id: "version-checked",
  label: "seed: version-checked read",
  groupHow:
    "no tags (row versions do not move for a group change): DEL key by key like cache-aside",
  viaGateway: true,
  create: async (env) =>
    seedCache(env, async (redis, cacheKey, key) => {
      const [cached, version] = await Promise.all([redis.get<Row>(cacheKey), env.db.version(key)]);
      return cached && cached.version === version ? cached : null;
    }),
};
