/**
 * Stampede benchmark: concurrent cold reads of one key, in one isolate and across ten, over an
 * Upstash gateway of its own with injected latency (default 5 ± 2 ms, like an edge → Upstash
 * hop) on a private redis-server of its own (the shared one is never touched). Prints loader calls, Redis requests (counted by the
 * gateway, per isolate) and latency percentiles. Isolates are modelled in one process: each
 * has its own gateway token (its own request counter) and its own `FlightRegistry`; the
 * requests of one isolate are separate per-request engines sharing that registry. Fills go
 * through `waitUntil`, as on Workers, and are counted.
 *
 *   npm run bench:stampede
 *   npm run bench:stampede -- --readers=200 --load-ms=50 --latency=5 --jitter=2 --rounds=5
 */
import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { EdgeCache, FlightRegistry } from "../src/cache";
import { startOwnRedis } from "../tools/lib/own-redis";
import { gatewayControl } from "../tools/upstash-gateway/control";
import { startGateway } from "../tools/upstash-gateway/server";
import { benchArgs } from "./lib/args";
import { progressLine } from "./lib/progress";
import { percentile } from "./lib/stats";

const args = benchArgs(
  "npm run bench:stampede --",
  "Concurrent cold reads of one key, in one isolate and across ten, over a private redis-server\nbehind the Upstash gateway: loads, Redis requests per isolate, p50/p99, issue 7's targets.",
  {
    readers: { default: 200, help: "concurrent cold reads per round" },
    "load-ms": { default: 50, help: "how long the loader takes, ms" },
    rounds: { default: 5, help: "rounds per scenario (a fresh key each)" },
    latency: { default: 5, help: "gateway latency per request, ms" },
    jitter: { default: 2, help: "± jitter on that latency, ms" },
  },
);
const LATENCY = args.latency;
const JITTER = args.jitter;
const READERS = args.readers;
const LOAD_MS = args["load-ms"];
const ROUNDS = args.rounds;
const ISOLATES = 10;
const DB = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  // A private redis-server on a free port, as `npm run bench` uses: the shared one is never
  // touched (this used to run in its DB 5 and FLUSHDB it at the end).
  const own = await startOwnRedis();
  const REDIS_URL = own.url;
  const tokens = Array.from(
    { length: ISOLATES },
    () => `stampede-${randomBytes(6).toString("hex")}`,
  );
  const gateway = await startGateway({
    port: 0,
    redisUrl: REDIS_URL,
    tokens: Object.fromEntries(tokens.map((t) => [t, { db: DB }])),
  });
  const control = (token: string, path: "stats" | "reset" | "faults", body?: unknown) =>
    gatewayControl<{ requests: number }>(gateway.url, token, path, body);
  const clients = tokens.map(
    (token) => new Redis({ url: gateway.url, token, enableTelemetry: false }),
  );
  const registries = tokens.map(() => new FlightRegistry());
  const prefix = `stampede${Date.now()}`;
  const engine = (isolate: number) =>
    new EdgeCache({
      redis: clients[isolate] as Redis,
      prefix,
      flights: registries[isolate],
      onError: (e) => console.warn("[bench] cache fault:", e),
    });
  let loads = 0;
  const loader = async () => {
    loads++;
    await sleep(LOAD_MS);
    return { id: 1, name: "Lamp", priceCents: 1999 };
  };
  // Fills go off the response path, as ctx.waitUntil does on Workers; awaited after each round.
  const background: Promise<unknown>[] = [];
  const opts = {
    ttl: 60_000,
    earlyRefresh: false as const,
    waitBudget: 5_000,
    waitUntil: (p: Promise<unknown>) => background.push(p),
  };

  // Load the scripts (a first EVAL) and give every isolate a measured load time, as a warm
  // isolate has: the lease holder announces it, the waiters sleep on it.
  await Promise.all(tokens.map((_, i) => engine(i).getOrLoad(`warm:${i}`, loader, opts)));
  await Promise.all(background.splice(0));
  await Promise.all(
    tokens.map((t) => control(t, "faults", { latencyMs: LATENCY, jitterMs: JITTER })),
  );
  console.log(
    `[bench] gateway ${LATENCY}±${JITTER} ms, loader ${LOAD_MS} ms, ${READERS} concurrent cold reads, ${ROUNDS} rounds`,
  );

  const run = async (name: string, isolates: number) => {
    const progress = progressLine();
    const rows: {
      loads: number;
      total: number;
      maxPerIsolate: number;
      p50: number;
      p99: number;
    }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const key = `cold:${name.replace(/\W/g, "")}:${round}`;
      await Promise.all(tokens.map((t) => control(t, "reset", {})));
      await Promise.all(
        tokens.map((t) => control(t, "faults", { latencyMs: LATENCY, jitterMs: JITTER })),
      );
      loads = 0;
      const times: number[] = [];
      await Promise.all(
        Array.from({ length: READERS }, async (_, n) => {
          const started = performance.now();
          const result = await engine(n % isolates).getOrLoad(key, loader, opts);
          times.push(performance.now() - started);
          if (result.value.name !== "Lamp") throw new Error(`wrong value for ${key}`);
        }),
      );
      await Promise.all(background.splice(0));
      const perIsolate = await Promise.all(
        tokens.slice(0, isolates).map(async (t) => (await control(t, "stats")).requests),
      );
      times.sort((a, b) => a - b);
      rows.push({
        loads,
        total: perIsolate.reduce((a, b) => a + b, 0),
        maxPerIsolate: Math.max(...perIsolate),
        p50: percentile(times, 50),
        p99: percentile(times, 99),
      });
      progress.update(`[bench] ${name}: round ${round + 1}/${ROUNDS}`);
    }
    progress.end();
    const median = (pick: (r: (typeof rows)[number]) => number) =>
      percentile(
        rows.map(pick).sort((a, b) => a - b),
        50,
      );
    return {
      name,
      loads: Math.max(...rows.map((r) => r.loads)),
      total: Math.max(...rows.map((r) => r.total)),
      maxPerIsolate: Math.max(...rows.map((r) => r.maxPerIsolate)),
      p50: median((r) => r.p50),
      p99: median((r) => r.p99),
    };
  };

  const one = await run("one isolate", 1);
  const ten = await run("ten isolates", ISOLATES);

  console.log(
    "\nworkload (worst round; p50/p99 median of rounds)  loads  requests  max/isolate  p50 ms  p99 ms",
  );
  for (const r of [one, ten]) {
    console.log(
      `${`${READERS} cold reads, ${r.name}`.padEnd(50)}${String(r.loads).padStart(5)}${String(r.total).padStart(10)}${String(r.maxPerIsolate).padStart(13)}${r.p50.toFixed(1).padStart(8)}${r.p99.toFixed(1).padStart(8)}`,
    );
  }
  // Issue 7's targets, judged on the worst round. Here the isolates have never loaded anything
  // before, so a waiter has no announced load time to sleep on and backs off from 10 ms: a few
  // more looks than in `npm run bench`, whose isolates each served one load first (2.0 there).
  const perIsolate = ten.total / ISOLATES;
  const verdict = (met: boolean) => (met ? "met" : "NOT MET");
  console.log(
    `[bench] targets (worst round): one isolate 1 load and ≤ 5 requests: ${verdict(one.loads === 1 && one.total <= 5)}; ten isolates 1 load and ≤ 3 requests per isolate: ${verdict(ten.loads === 1 && perIsolate <= 3)} (${perIsolate.toFixed(1)} on average, ${ten.maxPerIsolate} in the busiest). Loader alone: ${LOAD_MS} ms.`,
  );
  await Promise.all(tokens.map((t) => control(t, "faults", {})));
  await gateway.close();
  await own.stop();
}

main().catch((err: unknown) => {
  console.error(`[bench] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
