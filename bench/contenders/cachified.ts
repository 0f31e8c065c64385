/**
 * @epic-web/cachified with a small adapter over @upstash/redis (GET / SET PX / DEL of the
 * library's `{metadata, value}` entry). Its in-flight map is keyed by the cache object, so one
 * adapter = one isolate. Writes delete the key; no tags, so a group is deleted key by key.
 */
import {
  type Cache,
  type CacheEntry,
  cachified as cachifiedFn,
  totalTtl,
} from "@epic-web/cachified";
import type { Redis } from "@upstash/redis";
import { Background } from "../lib/background";
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";
import { deleteKeys } from "./seed-shared";

/** The adapter: what a user of cachified writes for Upstash (there is no official one). */
export function upstashCacheAdapter(redis: Redis, prefix: string): Cache<Row> {
  return {
    name: "upstash",
    get: (key) => redis.get<CacheEntry<Row>>(`${prefix}:${key}`),
    async set(key, entry) {
      const ttl = totalTtl(entry.metadata);
      const px = Number.isFinite(ttl) ? Math.max(1, Math.round(ttl)) : undefined;
      await (px
        ? redis.set(`${prefix}:${key}`, entry, { px })
        : redis.set(`${prefix}:${key}`, entry));
    },
    delete: (key) => redis.del(`${prefix}:${key}`),
  };
}

export const cachified: ContenderModule = {
  id: "cachified",
  label: "@epic-web/cachified",
  groupHow: "no tags: DEL of the group's keys (app-kept list), 1,000 per request",
  viaGateway: true,
  async create(env) {
    const redis = env.upstash();
    const background = new Background();
    const cache = upstashCacheAdapter(redis, env.prefix);
    return {
      get: (key, load) =>
        cachifiedFn<Row>({
          key,
          cache,
          getFreshValue: load,
          ttl: 300_000,
          waitUntil: background.waitUntil,
        }),
      async write(key) {
        await cache.delete(key);
      },
      invalidateGroup: (_tag, keys) =>
        deleteKeys(
          redis,
          keys.map((k) => `${env.prefix}:${k}`),
        ),
      settle: () => background.settle(),
      close: () => background.settle(),
    };
  },
};
