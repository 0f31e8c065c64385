import { type OwnRedis, startOwnRedis } from "../../tools/lib/own-redis";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";
import type { GlobalOptions } from "../../tools/upstash-gateway/topology";

/** A gateway with a Global topology on redis-servers of its own, and those servers. */
export interface GlobalGateway {
  gateway: Gateway;
  primary: OwnRedis;
  replica: OwnRedis;
  close(): Promise<void>;
}

/**
 * Starts a primary and a replica redis-server (never the shared one) and a gateway on a free
 * port serving `token` from the primary's DB 0, with the replica behind a lagging link.
 *
 * @example
 *   const g = await startGlobalGateway(token, { replicationLagMs: 150, primaryLatencyMs: 10 });
 *   // …
 *   await g.close();
 */
export async function startGlobalGateway(
  token: string,
  global: Omit<GlobalOptions, "replicaUrl">,
): Promise<GlobalGateway> {
  const [primary, replica] = await Promise.all([startOwnRedis(), startOwnRedis()]);
  const gateway = await startGateway({
    port: 0,
    redisUrl: primary.url,
    tokens: { [token]: { db: 0 } },
    global: { replicaUrl: replica.url, ...global },
  });
  return {
    gateway,
    primary,
    replica,
    async close() {
      await gateway.close();
      await Promise.all([primary.stop(), replica.stop()]);
    },
  };
}
