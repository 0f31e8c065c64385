/**
 * The bench's shared stage: its own redis-server, one Upstash gateway over it with one token
 * (and Redis DB) per contender so requests are counted per contender, a latency proxy for
 * RESP clients, and the in-memory database. Every contender runs against this same stage.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { MemoryDb } from "./db";
import { type LatencyProxy, startLatencyProxy } from "./latency-proxy";
import { startOwnRedis } from "./redis-server";
import { tsWorker } from "./ts-worker";
import type { Contender, ContenderEnv, ContenderModule } from "./types";

export interface Latency {
  /** Fixed part of every round trip, ms. */
  baseMs: number;
  /** Plus Math.random() * jitterMs. base 3 + jitter 4 = 5 ± 2 ms. */
  jitterMs: number;
}

export interface RedisCost {
  /** HTTP requests to the gateway (a pipeline is one), or RESP writes through the proxy. */
  requests: number;
  /** Redis commands carried by them. */
  commands: number;
}

export interface Stage {
  db: MemoryDb;
  latency: Latency;
  gatewayUrl: string;
  proxyUrl: string;
  tokenOf(contender: ContenderModule): string;
  /** A fresh, isolated env (new prefix) for one contender. */
  env(contender: ContenderModule, run: string): ContenderEnv;
  /** Builds `contender` in a fresh env (a new key prefix: runs never see each other's keys). */
  create(contender: ContenderModule, run: string): Promise<Contender>;
  /** Zeroes this contender's request counters (and re-applies the latency). */
  resetCost(contender: ContenderModule): Promise<void>;
  cost(contender: ContenderModule): Promise<RedisCost>;
  close(): Promise<void>;
}

export async function startStage(
  contenders: readonly ContenderModule[],
  latency: Latency,
  log: (line: string) => void,
): Promise<Stage> {
  const redis = await startOwnRedis();
  log(`own redis-server on port ${redis.port}`);
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
  const control = async (c: ContenderModule, path: string, body?: unknown) => {
    const res = await fetch(`${gateway.url}/__gateway/${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${tokenOf(c)}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`gateway ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { requests: number; commands: number };
  };
  const applyLatency = (c: ContenderModule) =>
    control(c, "faults", { latencyMs: latency.baseMs, jitterMs: latency.jitterMs });
  for (const c of contenders) await applyLatency(c);

  const upstash = (c: ContenderModule) =>
    new Redis({ url: gateway.url, token: tokenOf(c), enableTelemetry: false });

  const stage: Stage = {
    db,
    latency,
    gatewayUrl: gateway.url,
    proxyUrl: proxy.url,
    tokenOf,
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
      const { requests, commands } = await control(c, "stats");
      return { requests, commands };
    },
    async close() {
      await proxy.close();
      await gateway.close();
      await redis.close();
    },
  };
  return stage;
}
