/**
 * Pub/sub through the local gateway: what a subscriber costs and how fast it hears.
 * A real @upstash/redis subscriber on the gateway's SSE route, real Redis publishing.
 * Reports time to subscribe and to release the Redis connection, delivery latency
 * percentiles for a burst and a steady trickle, and connections per stream.
 *
 *   npx tsx bench/pubsub.ts                   # defaults
 *   npx tsx bench/pubsub.ts --burst=5000 --trickle=200 --db=0
 */
import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { ensureRedis } from "../tools/lib/services";
import { startGateway } from "../tools/upstash-gateway/server";
import { benchArgs } from "./lib/args";
import { percentile } from "./lib/stats";

const args = benchArgs(
  "npx tsx bench/pubsub.ts",
  "Pub/sub through the local gateway: time to subscribe and to release, delivery latency\npercentiles for a burst and a steady trickle, connections per stream.",
  {
    burst: { default: 2000, help: "messages published at once" },
    trickle: { default: 200, help: "messages published one by one" },
    db: { default: 0, help: "Redis DB index the gateway uses" },
  },
);
const BURST = args.burst;
const TRICKLE = args.trickle;
const DB = args.db;
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function until(check: () => Promise<boolean> | boolean): Promise<number> {
  const started = performance.now();
  while (!(await check())) await sleep(1);
  return performance.now() - started;
}

async function main(): Promise<void> {
  await ensureRedis(REDIS_URL, (line) => console.error(line));
  const token = `bench-${randomBytes(6).toString("hex")}`;
  const gateway = await startGateway({
    port: 0,
    redisUrl: REDIS_URL,
    tokens: { [token]: { db: DB } },
  });
  const direct = new IORedis(REDIS_URL, { db: DB });
  const redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
  const channel = `bench:${randomBytes(4).toString("hex")}:events`;
  const ours = async () =>
    ((await direct.call("CLIENT", "LIST")) as string)
      .split("\n")
      .filter((l) => l.includes(`name=upstash-gateway:${gateway.port}:`)).length;

  const latencies: number[] = [];
  const sub = redis.subscribe<{ t: number; pad: string }>(channel);
  sub.on("message", ({ message }) =>
    latencies.push(performance.timeOrigin + performance.now() - message.t),
  );
  const subscribeMs = await until(async () => {
    const [, n] = (await direct.call("PUBSUB", "NUMSUB", channel)) as [string, number];
    return Number(n) === 1;
  });
  const connections = await ours();

  // A realistic event (a batch of 20 keys and 3 tags), stamped at publish time.
  const pad = JSON.stringify({
    keys: Array.from({ length: 20 }, (_, i) => `product:${i}`),
    tags: ["category:1", "category:2", "category:3"],
  });
  const now = () => performance.timeOrigin + performance.now();

  const burstStart = performance.now();
  const pipeline = direct.pipeline();
  for (let i = 0; i < BURST; i++) pipeline.publish(channel, JSON.stringify({ t: now(), pad }));
  await pipeline.exec();
  await until(() => latencies.length >= BURST);
  const burstMs = performance.now() - burstStart;
  const burst = latencies.splice(0).sort((a, b) => a - b);

  for (let i = 0; i < TRICKLE; i++) {
    await direct.publish(channel, JSON.stringify({ t: now(), pad }));
    await sleep(2);
  }
  await until(() => latencies.length >= TRICKLE);
  const trickle = latencies.splice(0).sort((a, b) => a - b);

  const closeStart = performance.now();
  await sub.unsubscribe();
  await until(async () => (await ours()) === 0);
  const releaseMs = performance.now() - closeStart;

  console.log(
    `pub/sub through the gateway (${REDIS_URL} db ${DB}), payload ${pad.length + 30} bytes`,
  );
  console.log(`  subscribe() until Redis has the subscriber: ${ms(subscribeMs)}`);
  console.log(`  Redis connections per stream: ${connections}`);
  console.log(
    `  burst of ${BURST}: ${Math.round(BURST / (burstMs / 1000))} msg/s; latency p50 ${ms(percentile(burst, 50))}, p99 ${ms(percentile(burst, 99))}, max ${ms(burst.at(-1) ?? Number.NaN)}`,
  );
  console.log(
    `  trickle of ${TRICKLE} (one per ~2 ms): latency p50 ${ms(percentile(trickle, 50))}, p99 ${ms(percentile(trickle, 99))}, max ${ms(trickle.at(-1) ?? Number.NaN)}`,
  );
  console.log(`  unsubscribe() until the Redis connection is gone: ${ms(releaseMs)}`);
  await gateway.close();
  await direct.quit();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
