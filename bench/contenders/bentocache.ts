/**
 * bentocache with only its Redis (L2) layer, through ioredis, via the bench's latency proxy in
 * front of the same redis-server (ioredis speaks RESP, not Upstash's REST). No memory (L1) layer
 * and no bus: like the others, every read asks Redis, so hits compare like for like. Its
 * stampede lock lives on the BentoCache instance, so one instance = one isolate.
 */
import { BentoCache, bentostore } from "bentocache";
import { redisDriver } from "bentocache/drivers/redis";
import { Redis as IORedis } from "ioredis";
import type { Row } from "../lib/db";
import type { ContenderModule } from "../lib/types";

export const bentocache: ContenderModule = {
  id: "bentocache",
  label: "bentocache (Redis L2)",
  groupHow: "deleteByTag: native tags (a tag timestamp checked on reads)",
  viaGateway: false,
  async create(env) {
    const connection = new IORedis(env.redisProxyUrl, {
      maxRetriesPerRequest: 2,
      lazyConnect: false,
    });
    const bento = new BentoCache({
      default: "l2",
      prefix: env.prefix,
      ttl: "5m",
      stores: { l2: bentostore().useL2Layer(redisDriver({ connection })) },
    });
    return {
      get: (key, load, options) =>
        bento.getOrSet<Row>({
          key,
          factory: load,
          tags: options?.tags ? [...options.tags] : undefined,
        }),
      async write(key) {
        await bento.delete({ key });
      },
      async invalidateGroup(tag) {
        await bento.deleteByTag({ tags: [tag] });
      },
      settle: async () => undefined,
      async close() {
        await bento.disconnectAll();
        connection.disconnect();
      },
    };
  },
};
