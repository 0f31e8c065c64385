/**
 * Read-path benchmark: edgecache vs a hand-rolled cache-aside, side by side in one run, over
 * the same Upstash gateway and real Redis with injected network latency (default 5 ms ± 2 ms,
 * like an edge → Upstash hop). Reports Redis requests per read and latency percentiles, and
 * loader calls under a cold-key stampede. Ratios, not absolute numbers, are the result.
 *
 *   npm run bench            # defaults
 *   npm run bench -- --latency=20 --reads=500
 */
import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { EdgeCache } from "../src/cache";
import { ensureRedis } from "../tools/lib/services";
import { startGateway } from "../tools/upstash-gateway/server";

const arg = (name: string, fallback: number) => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? Number(hit.split("=")[1]) : fallback;
};
const LATENCY = arg("latency", 5);
const JITTER = arg("jitter", 2);
const READS = arg("reads", 300);
const STAMPEDE = arg("stampede", 100);
const LOAD_MS = arg("load-ms", 30);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const row = { id: 1, name: "Lamp", priceCents: 1999, version: 3 };
const loader = async () => {
  await sleep(LOAD_MS);
  return row;
};

/** The usual hand-rolled pattern: GET; on miss load, then SET with EX. Version and tag checks
 * need the version key and the tag counters too: one pipeline (its best case). */
function naive(redis: Redis) {
  let loads = 0;
  return {
    get loads() {
      return loads;
    },
    async read(key: string) {
      const [entry, version, tag] = await redis
        .pipeline()
        .get<{ value: typeof row; version: number; tag: number }>(`naive:${key}`)
        .get<number>(`naive:v:${key}`)
        .get<number>("naive:t:products")
        .exec();
      if (entry && entry.version >= (version ?? 0) && entry.tag === (tag ?? 0)) return entry.value;
      loads++;
      const value = await loader();
      await redis.set(`naive:${key}`, { value, version: value.version, tag: tag ?? 0 }, { ex: 60 });
      return value;
    },
  };
}

/** The same checks as separate awaits, as most hand-rolled tag/version schemes issue them. */
function naiveSequential(redis: Redis) {
  return {
    async read(key: string) {
      const entry = await redis.get<{ value: typeof row; version: number; tag: number }>(
        `naive:${key}`,
      );
      const version = await redis.get<number>(`naive:v:${key}`);
      const tag = await redis.get<number>("naive:t:products");
      if (entry && entry.version >= (version ?? 0) && entry.tag === (tag ?? 0)) return entry.value;
      const value = await loader();
      await redis.set(`naive:${key}`, { value, version: value.version, tag: tag ?? 0 }, { ex: 60 });
      return value;
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function main(): Promise<void> {
  await ensureRedis(REDIS_URL, (l) => console.log(`[bench] ${l}`));
  const token = `bench-${randomBytes(6).toString("hex")}`;
  const gateway = await startGateway({
    port: 0,
    redisUrl: REDIS_URL,
    tokens: { [token]: { db: 3 } },
  });
  const control = async (path: string, body?: unknown) => {
    const res = await fetch(`${gateway.url}/__gateway/${path}`, {
      method: body === undefined && path === "stats" ? "GET" : "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as { requests: number };
  };
  const redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
  await redis.flushdb();
  const prefix = `bench${Date.now()}`;
  const cache = new EdgeCache({ redis, prefix });
  const opts = {
    ttl: 60_000,
    tags: ["products"],
    versionKey: "product:1",
    versionOf: (r: typeof row) => r.version,
    earlyRefresh: false as const,
  };
  const hand = naive(redis);
  await cache.getOrLoad("product:1", loader, opts);
  await hand.read("product:1");
  await control("faults", { latencyMs: LATENCY, jitterMs: JITTER });
  console.log(
    `[bench] gateway latency ${LATENCY}±${JITTER} ms, ${READS} sequential hits each, loader ${LOAD_MS} ms`,
  );

  const measure = async (name: string, read: () => Promise<unknown>) => {
    await control("reset");
    await control("faults", { latencyMs: LATENCY, jitterMs: JITTER });
    const times: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t = performance.now();
      await read();
      times.push(performance.now() - t);
      if ((i + 1) % 100 === 0) process.stdout.write(`\r[bench] ${name}: ${i + 1}/${READS}`);
    }
    process.stdout.write("\n");
    const { requests } = await control("stats");
    times.sort((a, b) => a - b);
    return {
      name,
      reqPerRead: requests / READS,
      p50: percentile(times, 50),
      p99: percentile(times, 99),
    };
  };
  const engine = await measure("edgecache hit", () => cache.getOrLoad("product:1", loader, opts));
  const baseline = await measure("hand-rolled hit", () => hand.read("product:1"));
  const sequential = naiveSequential(redis);
  const seq = await measure("sequential checks hit", () => sequential.read("product:1"));

  // Cold-key stampede: STAMPEDE concurrent readers of a key nobody has loaded yet.
  await control("faults", { latencyMs: LATENCY, jitterMs: JITTER });
  let engineLoads = 0;
  const counted = async () => {
    engineLoads++;
    return loader();
  };
  const isolates = Array.from({ length: 10 }, () => new EdgeCache({ redis, prefix }));
  await Promise.all(
    Array.from({ length: STAMPEDE }, (_, i) =>
      isolates[i % 10]?.getOrLoad("cold:1", counted, {
        ...opts,
        versionKey: undefined,
        versionOf: undefined,
      }),
    ),
  );
  const before = hand.loads;
  await Promise.all(Array.from({ length: STAMPEDE }, () => hand.read("cold:1")));
  const naiveLoads = hand.loads - before;

  const fmt = (n: number) => n.toFixed(2).padStart(8);
  console.log("\n                      requests/read   p50 ms   p99 ms");
  for (const r of [engine, baseline, seq]) {
    console.log(`${r.name.padEnd(22)}${fmt(r.reqPerRead)}      ${fmt(r.p50)} ${fmt(r.p99)}`);
  }
  for (const r of [baseline, seq]) {
    console.log(
      `ratio (${r.name} / edgecache): requests ×${(r.reqPerRead / engine.reqPerRead).toFixed(2)}, p50 ×${(r.p50 / engine.p50).toFixed(2)}`,
    );
  }
  console.log(
    `stampede of ${STAMPEDE} cold reads: edgecache loader calls ${engineLoads}, hand-rolled ${naiveLoads}`,
  );
  await control("faults", {});
  await gateway.close();
}

main().catch((err: unknown) => {
  console.error(`[bench] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
