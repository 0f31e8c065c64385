/**
 * Eviction-policy benchmark: the same Zipf read workload through the engine under each Redis
 * eviction policy, with maxmemory set to a fraction of the workload's working set. Runs on its
 * OWN redis-server (a child process on a free port; the shared server is never touched) behind
 * the local Upstash gateway.
 *
 *   npm run bench:eviction
 *   npm run bench:eviction -- --keys=2000 --ops=30000 --warmup=10000 --fraction=0.35 --zipf=1 --writes=0.02 --seed=1
 *
 * Per policy: hit ratio, loads, evicted_keys (INFO stats), the engine's own keys evicted
 * (exact, from `evicted` keyspace notifications), and stale reads (must be 0). Results go to
 * bench/results/eviction.json.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { EdgeCache } from "../src/cache";
import { EvictionWatch, emptyKinds, type KeyKind } from "../tools/lib/evictions";
import { startOwnRedis } from "../tools/lib/own-redis";
import { startGateway } from "../tools/upstash-gateway/server";
import { runWorkload, type WorkloadOptions, type WorkloadResult } from "./eviction-workload";
import { benchArgs } from "./lib/args";
import { progressLine } from "./lib/progress";

const POLICIES = [
  "allkeys-lru",
  "allkeys-lfu",
  "volatile-lru",
  "volatile-lfu",
  "volatile-random",
] as const;
/** Not an eviction policy: what an Upstash database does with eviction off. For contrast. */
const CONTRAST = "noeviction";
/** Upstash's only algorithm, "optimistic-volatile", samples keys with a TTL at random first. */
const CLOSEST_TO_UPSTASH = "volatile-random";
const PREFIX = "ev";

const args = benchArgs(
  "npm run bench:eviction --",
  "The same Zipf read workload through the engine under each Redis eviction policy, maxmemory a\nfraction of the working set, on a private redis-server; results in bench/results/eviction.json.",
  {
    keys: { default: 2000, help: "distinct keys" },
    ops: { default: 30_000, help: "measured operations per policy" },
    warmup: { default: 10_000, help: "operations before measuring" },
    zipf: { default: 1, help: "Zipf exponent of key popularity" },
    writes: { default: 0.02, help: "share of operations that write" },
    concurrency: { default: 8, help: "concurrent clients" },
    seed: { default: 1, help: "random seed" },
    payload: { default: 400, help: "value size, bytes" },
    categories: { default: 50, help: "tags (categories) over the keys" },
    fraction: { default: 0.35, help: "maxmemory as a fraction of the working set" },
  },
);
const workload: Omit<WorkloadOptions, "onProgress"> = {
  keys: args.keys,
  ops: args.ops,
  warmup: args.warmup,
  zipf: args.zipf,
  writeShare: args.writes,
  concurrency: args.concurrency,
  seed: args.seed,
  payloadBytes: args.payload,
  categories: args.categories,
  progressEvery: 1000,
};
const FRACTION = args.fraction;

interface Row {
  policy: string;
  maxmemory: number;
  hitRatio: number;
  loads: number;
  reads: number;
  evictedKeys: number;
  engineKeysEvicted: Record<KeyKind, number>;
  staleReads: number;
  writeErrors: number;
  engineErrors: number;
  byStatus: Record<string, number>;
  seconds: number;
}

const log = (line: string) => console.log(`[bench:eviction] ${line}`);
const line = progressLine();
const progress = (label: string) => (done: number, total: number) =>
  line.update(`[bench:eviction] ${label}: ${done}/${total} ops`);

function info(text: string, field: string): number {
  const match = text.match(new RegExp(`^${field}:(\\d+)`, "m"));
  return match ? Number(match[1]) : 0;
}

async function main(): Promise<void> {
  log("starting a private redis-server (the shared one is not touched)");
  const server = await startOwnRedis(["--maxmemory-policy", "noeviction"]);
  const admin = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  const token = `ev-${randomBytes(6).toString("hex")}`;
  const gateway = await startGateway({
    port: 0,
    redisUrl: server.url,
    tokens: { [token]: { db: 0 } },
  });
  const watch = await EvictionWatch.start(server.url);
  const redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
  const makeCache = (onError: (err: unknown) => void) =>
    new EdgeCache({ redis, prefix: PREFIX, onError });

  try {
    log(
      `redis-server on port ${server.port}; workload: ${workload.keys} keys, ${workload.ops} ops (the first ${workload.warmup} not counted), Zipf s=${workload.zipf}, ${workload.writeShare * 100}% writes, ${workload.concurrency} lanes, seed ${workload.seed}`,
    );

    // 1. Working set: the whole workload with no limit.
    await admin.flushall();
    await admin.config("SET", "maxmemory", "0");
    const t0 = performance.now();
    const unlimited = await runWorkload(makeCache, {
      ...workload,
      onProgress: progress("no limit (working set)"),
    });
    line.end();
    const full = info(await admin.info("memory"), "used_memory");
    const keys = await admin.dbsize();
    // "Empty" is measured after the run, flushed: with the gateway's and our connections open
    // and the scripts cached. Their memory counts against maxmemory but cannot be evicted.
    await admin.flushall();
    const baseline = info(await admin.info("memory"), "used_memory");
    const workingSet = full - baseline;
    const maxmemory = Math.round(baseline + FRACTION * workingSet);
    log(
      `working set ${(workingSet / 1024).toFixed(0)} KiB (${keys} keys) above a ${(baseline / 1024).toFixed(0)} KiB empty server; maxmemory = empty + ${FRACTION * 100}% = ${(maxmemory / 1024).toFixed(0)} KiB`,
    );
    const rows: Row[] = [
      toRow("no limit", 0, unlimited, 0, emptyKinds(), (performance.now() - t0) / 1000),
    ];

    // 2. Each policy, same workload, same seed.
    for (const policy of [...POLICIES, CONTRAST]) {
      await admin.config("SET", "maxmemory", "0");
      await admin.flushall();
      await admin.config("RESETSTAT");
      await admin.config("SET", "maxmemory-policy", policy);
      await admin.config("SET", "maxmemory", String(maxmemory));
      await watch.settle();
      watch.reset();
      const started = performance.now();
      const result = await runWorkload(makeCache, { ...workload, onProgress: progress(policy) });
      line.end();
      // Redis may go on evicting in the background for a moment after the last command; let it
      // finish so INFO and the notifications describe the same evictions.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await watch.settle();
      const evicted = info(await admin.info("stats"), "evicted_keys");
      const memory = await admin.info("memory");
      log(
        `${policy}: used_memory ${(info(memory, "used_memory") / 1024).toFixed(0)} KiB (dataset ${(info(memory, "used_memory_dataset") / 1024).toFixed(0)} KiB, overhead ${(info(memory, "used_memory_overhead") / 1024).toFixed(0)} KiB, clients ${(info(memory, "mem_clients_normal") / 1024).toFixed(0)} KiB)`,
      );
      rows.push(
        toRow(
          policy,
          maxmemory,
          result,
          evicted,
          watch.byKind(PREFIX),
          (performance.now() - started) / 1000,
        ),
      );
      if (result.staleExamples.length > 0) log(`STALE READS: ${result.staleExamples.join("; ")}`);
      if (policy !== CONTRAST && result.engineErrors + result.writeErrors > 0) {
        log(
          `${policy}: ${result.engineErrors + result.writeErrors} cache faults (OOM?): the limit leaves too little room above the server's own memory; try more --keys or a larger --fraction`,
        );
      }
    }

    printTable(rows);
    const out = join(dirname(fileURLToPath(import.meta.url)), "results", "eviction.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(
      out,
      `${JSON.stringify(
        {
          generatedAt: new Date().toISOString(),
          redis: (await admin.info("server")).match(/^redis_version:(.*)$/m)?.[1]?.trim(),
          workload: { ...workload, fraction: FRACTION },
          workingSetBytes: workingSet,
          emptyServerBytes: baseline,
          closestToUpstash: CLOSEST_TO_UPSTASH,
          rows,
        },
        null,
        2,
      )}\n`,
    );
    log(`results written to ${out}`);
    if (rows.some((r) => r.staleReads > 0)) {
      log("FAIL: stale reads observed (see above)");
      process.exitCode = 1;
    }
  } finally {
    watch.close();
    admin.disconnect();
    await gateway.close();
    await server.stop();
  }
}

function toRow(
  policy: string,
  maxmemory: number,
  r: WorkloadResult,
  evictedKeys: number,
  engineKeysEvicted: Record<KeyKind, number>,
  seconds: number,
): Row {
  return {
    policy,
    maxmemory,
    hitRatio: r.hitRatio,
    loads: r.loads,
    reads: r.reads,
    evictedKeys,
    engineKeysEvicted,
    staleReads: r.staleReads,
    writeErrors: r.writeErrors,
    engineErrors: r.engineErrors,
    byStatus: r.byStatus,
    seconds,
  };
}

function printTable(rows: Row[]): void {
  const header = [
    "policy",
    "hit ratio",
    "loads",
    "evicted_keys",
    "entries",
    "version keys",
    "tag counters",
    "leases",
    "stale reads",
    "errors",
  ];
  const lines = rows.map((r) => [
    r.policy === CLOSEST_TO_UPSTASH
      ? `${r.policy} (≈ Upstash)`
      : r.policy === CONTRAST
        ? `${r.policy} (Upstash, eviction off)`
        : r.policy,
    `${(r.hitRatio * 100).toFixed(1)} %`,
    String(r.loads),
    String(r.evictedKeys),
    String(r.engineKeysEvicted.entry),
    String(r.engineKeysEvicted.version),
    String(r.engineKeysEvicted.tag),
    String(r.engineKeysEvicted.lease),
    String(r.staleReads),
    String(r.writeErrors + r.engineErrors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  console.log();
  console.log(fmt(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const line of lines) console.log(fmt(line));
  console.log();
  console.log(
    `${CLOSEST_TO_UPSTASH} is the closest to Upstash with eviction on: its only algorithm, optimistic-volatile, samples keys with a TTL at random first and falls back to random non-volatile keys when those do not free enough. ${CONTRAST} is Upstash's default (eviction off: writes rejected once full). "errors" = cache writes not acknowledged + engine faults (BYPASS reads, failed fills), e.g. OOM.`,
  );
}

main().catch((err: unknown) => {
  console.error(`[bench:eviction] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
