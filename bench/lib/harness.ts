/**
 * The bench's shared stage: its own redis-server, one Upstash gateway over it with one token
 * (and Redis DB) per contender so requests are counted per contender, a latency proxy for
 * RESP clients, and the in-memory database. Every contender runs against this same stage.
 */
import { randomBytes } from "node:crypto";
import { startOwnRedis } from "../../tools/lib/own-redis";
import { gatewayControl } from "../../tools/upstash-gateway/control";
import { MemoryDb } from "./db";
import { type LatencyProxy, startLatencyProxy } from "./latency-proxy";
import { tsWorker } from "./ts-worker";
import type { Contender, ContenderEnv, ContenderModule } from "./types";
import { benchUpstash } from "./upstash";

export interface Latency {
  /** Fixed part of every round trip, ms. */
  baseMs: number;
  /**
   * Plus jitterMs times a draw in [0, 1) from sequences seeded with JITTER_SEED, one per kind of
   * request, the same for every contender (the gateway's `jitterSeed`). base 3 + jitter 4 = 5 ± 2 ms.
   */
  jitterMs: number;
}

/** The seed of every gateway contender's jitter sequence (see applyLatency). */
const JITTER_SEED = 7;

export interface RedisCost {
  /** HTTP requests to the gateway (a pipeline is one), or RESP writes through the proxy. */
  requests: number;
  /** Redis commands carried by them. */
  commands: number;
  /** Gateway only: commands that write or may write (EVAL/EVALSHA count as writing). */
  writing?: number;
  /** Gateway only: script runs Upstash would run under the database's global lock. */
  globalLock?: number;
  /** Gateway only: requests the read replica served (Global topology). */
  servedByReplica?: number;
}

/** An Upstash Global database: primary and read replica, each with its own round-trip time. */
export interface GlobalTopologyOptions {
  primaryLatencyMs: number;
  replicaLatencyMs: number;
  replicationLagMs: number;
}

/** What the gateway's stats route answers (the fields the bench reads). */
interface GatewayStats {
  requests: number;
  commands: number;
  calls?: { readOnly: number; writing: number; other: number };
  scripts?: { globalLock: number; keyLocked: number };
  served?: { primary: number; replica: number };
}

export interface Stage {
  db: MemoryDb;
  latency: Latency;
  gatewayUrl: string;
  proxyUrl: string;
  tokenOf(contender: ContenderModule): string;
  /** Whether `contender` has a gateway token here (the stage was started with it). */
  has(contender: ContenderModule): boolean;
  /** A fresh, isolated env (new prefix) for one contender. */
  env(contender: ContenderModule, run: string): ContenderEnv;
  /** Builds `contender` in a fresh env (a new key prefix: runs never see each other's keys). */
  create(contender: ContenderModule, run: string): Promise<Contender>;
  /** Zeroes this contender's request counters (and re-applies the latency). */
  resetCost(contender: ContenderModule): Promise<void>;
  cost(contender: ContenderModule): Promise<RedisCost>;
  close(): Promise<void>;
}

/**
 * Starts the stage. With `global`, the gateway fronts a primary and a read replica (two more
 * redis-servers of the bench's own) and the topology's latencies replace `latency`.
 */
export async function startStage(
  contenders: readonly ContenderModule[],
  latency: Latency,
  log: (line: string) => void,
  global?: GlobalTopologyOptions,
): Promise<Stage> {
  const redis = await startOwnRedis();
  const replica = global ? await startOwnRedis() : undefined;
  log(
    replica
      ? `own redis-servers: primary on port ${redis.port}, replica on port ${replica.port}`
      : `own redis-server on port ${redis.port}`,
  );
  const tokens: Record<string, { db: number }> = {};
  const tokenById = new Map<string, string>();
  contenders.forEach((c, i) => {
    const token = `bench-${c.id}-${randomBytes(4).toString("hex")}`;
    tokens[token] = { db: i % 16 };
    tokenById.set(c.id, token);
  });
  const gatewayThread = tsWorker(new URL("./gateway-worker.ts", import.meta.url), {
    redisUrl: redis.url,
    tokens,
    global: replica && global ? { replicaUrl: replica.url, ...global } : undefined,
  });
  const gateway = await new Promise<{ url: string; close(): Promise<void> }>((resolve, reject) => {
    gatewayThread.once("error", reject);
    gatewayThread.once("message", (msg: { type: string; url: string }) =>
      resolve({
        url: msg.url,
        close: () =>
          new Promise<void>((done) => {
            gatewayThread.once("message", () => void gatewayThread.terminate().then(() => done()));
            gatewayThread.postMessage({ type: "close" });
          }),
      }),
    );
  });
  const proxy: LatencyProxy = await startLatencyProxy(redis.port);
  proxy.setLatency(latency.baseMs, latency.jitterMs);
  const db = new MemoryDb();

  const tokenOf = (c: ContenderModule) => {
    const token = tokenById.get(c.id);
    if (!token) throw new Error(`no gateway token for ${c.id}`);
    return token;
  };
  const control = (c: ContenderModule, path: "stats" | "reset" | "faults", body?: unknown) =>
    gatewayControl<GatewayStats>(gateway.url, tokenOf(c), path, body);
  // Every contender's jitter comes from the same seeded sequences, one per kind of request,
  // restarted at each reset: its n-th hit waits what every other contender's n-th hit waits
  // (common random numbers), even when it sends requests the others do not in between (the
  // engine's stats flush), so a comparison of two contenders' latencies does not also compare
  // two draws of the noise.
  const applyLatency = async (c: ContenderModule) => {
    if (!global) {
      await control(c, "faults", {
        latencyMs: latency.baseMs,
        jitterMs: latency.jitterMs,
        jitterSeed: JITTER_SEED,
      });
    }
  };
  for (const c of contenders) await applyLatency(c);

  const upstash = (c: ContenderModule) => benchUpstash(gateway.url, tokenOf(c));

  const stage: Stage = {
    db,
    latency,
    gatewayUrl: gateway.url,
    proxyUrl: proxy.url,
    tokenOf,
    has: (c) => tokenById.has(c.id),
    env: (c, run) => ({
      upstash: () => upstash(c),
      redisProxyUrl: proxy.url,
      prefix: `${run.slice(0, 12)}-${Math.random().toString(36).slice(2, 10)}`,
      db,
    }),
    async create(c, run) {
      return c.create(stage.env(c, run));
    },
    async resetCost(c) {
      if (c.viaGateway) {
        await control(c, "reset", {});
        await applyLatency(c);
      } else proxy.reset();
    },
    async cost(c) {
      // RESP has no request envelope: each command is one request/response on the connection.
      if (!c.viaGateway) return { requests: proxy.commands, commands: proxy.commands };
      const stats = await control(c, "stats");
      return {
        requests: stats.requests,
        commands: stats.commands,
        writing: stats.calls?.writing,
        globalLock: stats.scripts?.globalLock,
        servedByReplica: stats.served?.replica,
      };
    },
    async close() {
      await proxy.close();
      await gateway.close();
      await redis.stop();
      await replica?.stop();
    },
  };
  return stage;
}
