/**
 * @unkey/cache with its Upstash store, as its README shows: one Namespace over
 * `UpstashRedisStore`, `swr(key, load)` on reads, `remove(key)` on writes. Its in-flight map
 * (`revalidating`) lives on the Namespace instance, so one instance = one isolate.
 *
 * Note what the library does (1.5.0, dist/stores.mjs): the store's `set` and `remove` do not
 * await the Redis call — `remove()` resolves before the DEL reached Redis. That is its
 * acknowledgment, and the bench measures it as such.
 */
import { createCache, Namespace } from "@unkey/cache";
import { UpstashRedisStore } from "@unkey/cache/stores";
import { Background } from "../lib/background";
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The store's un-awaited SET/DEL cannot be tracked: wait out a few round trips instead. */
const UNTRACKED_SETTLE_MS = 40;

export const unkey: ContenderModule = {
  id: "unkey",
  label: "@unkey/cache (Upstash store)",
  groupHow:
    "no tags: remove() with the group's keys (app-kept list), 1,000 per call; DEL not awaited",
  viaGateway: true,
  async create(env) {
    const redis = env.upstash();
    const background = new Background();
    const store = new UpstashRedisStore<string, Row>({ redis });
    const cache = createCache({
      [env.prefix]: new Namespace<Row>(background, {
        stores: [store],
        fresh: 300_000,
        stale: 600_000,
      }),
    });
    const ns = cache[env.prefix];
    if (!ns) throw new Error("unkey namespace missing");
    return {
      async get(key, load) {
        const res = await ns.swr(key, load);
        if (res.err) throw res.err;
        if (res.val === undefined || res.val === null)
          throw new Error(`unkey: no value for ${key}`);
        return res.val;
      },
      async write(key) {
        const res = await ns.remove(key);
        if (res.err) throw res.err;
      },
      async invalidateGroup(_tag, keys) {
        for (let i = 0; i < keys.length; i += 1000) {
          // The store's remove() takes an array (one DEL); the typed API says string.
          const res = await ns.remove(keys.slice(i, i + 1000) as unknown as string);
          if (res.err) throw res.err;
        }
      },
      async settle() {
        await background.settle();
        await sleep(UNTRACKED_SETTLE_MS);
      },
      async close() {
        await background.settle();
        await sleep(UNTRACKED_SETTLE_MS);
      },
    };
  },
};
