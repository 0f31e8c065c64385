/**
 * The seed's plain cache-aside, as written: GET; on a miss load and SET with EX; on a write DEL.
 * No lease, no version check: a slow load that began before a write can SET the old row after
 * the DEL (a stale set), and concurrent misses all load.
 */
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";
import { seedCache } from "./seed-shared";

export const cacheAside: ContenderModule = {
  id: "cache-aside",
  label: "seed: cache-aside + DEL",
  groupHow: "no tags: DEL of the group's keys (app-kept list), 1,000 per request",
  viaGateway: true,
  create: async (env) => seedCache(env, (redis, cacheKey) => redis.get<Row>(cacheKey)),
};
