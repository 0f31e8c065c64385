/**
 * The stampede: N concurrent reads of one cold key with a slow loader.
 * - one isolate: all N reads through one contender instance (one client, one copy of the
 *   library's in-process state), as concurrent requests of one Workers isolate;
 * - ten isolates: N/10 reads in each of ten worker threads, each with its own copy of the
 *   library (module scope included) and its own client, the database shared.
 * Loads, Redis requests (all isolates together) and read latency p50/p99.
 */
import { Worker } from "node:worker_threads";
import type { Stage } from "../lib/harness";
import type { FromWorker, IsolateData, ToWorker } from "../lib/isolate-worker";
import type { WorkloadResult } from "../lib/result";
import { percentile } from "../lib/stats";
import type { ContenderModule } from "../lib/types";
import type { Workload } from "./workload";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const columns = (isolates: number): WorkloadResult["columns"] => [
  { key: "loads", label: "loads", better: "lower", digits: 0 },
  { key: "requests", label: "Redis req", better: "lower", digits: 0 },
  ...(isolates > 1
    ? [{ key: "requestsPerIsolate", label: "req/isolate", better: "lower" as const, digits: 1 }]
    : []),
  { key: "p50", label: "p50 ms", better: "lower", digits: 1 },
  { key: "p99", label: "p99 ms", better: "lower", digits: 1 },
];

export const stampedeOne: Workload = {
  id: "stampede",
  title: "Stampede, one isolate",
  async run({ stage, contenders, params, progress }) {
    const result: WorkloadResult = {
      id: "stampede",
      title: "Stampede, one isolate",
      setup: `${params.stampede} concurrent cold reads of one key, ${params.stampedeLoadMs} ms loader, one instance`,
      columns: columns(1),
      rows: [],
      notes: [],
    };
    for (const c of contenders) {
      progress(`${c.label}: ${params.stampede} concurrent cold reads`);
      const cache = await stage.create(c, "stampede1");
      await cache.get("warmup", () => stage.db.load("warmup", 0));
      await cache.settle();
      stage.db.resetCounters();
      await stage.resetCost(c);
      const key = "cold:one";
      const times = await Promise.all(
        Array.from({ length: params.stampede }, async () => {
          const t = performance.now();
          await cache.get(key, () => stage.db.load(key, params.stampedeLoadMs));
          return performance.now() - t;
        }),
      );
      await cache.settle();
      const cost = await stage.cost(c);
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: {
          loads: stage.db.loads,
          requests: cost.requests,
          p50: percentile(times, 50),
          p99: percentile(times, 99),
        },
      });
      await cache.close();
    }
    return result;
  },
};

/** Starts `count` isolates of `c`, waits until all are ready, fires them at once. */
async function runIsolates(
  stage: Stage,
  c: ContenderModule,
  count: number,
  reads: number,
  loadMs: number,
): Promise<{ times: number[]; errors: string[] }> {
  const prefix = `${c.id}-stampede10-${Date.now()}`;
  const workers = Array.from({ length: count }, (_, i) => {
    const data: IsolateData = {
      contenderId: c.id,
      gatewayUrl: stage.gatewayUrl,
      token: stage.tokenOf(c),
      proxyUrl: stage.proxyUrl,
      prefix,
      key: "cold:ten",
      reads: Math.floor(reads / count) + (i < reads % count ? 1 : 0),
    };
    return new Worker(new URL("../lib/isolate-worker.ts", import.meta.url), {
      workerData: data,
      execArgv: ["--import", "tsx"],
    });
  });
  const ready = workers.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.once("error", reject);
        const onMessage = (msg: FromWorker) => {
          if (msg.type === "ready") {
            w.off("message", onMessage);
            resolve();
          }
        };
        w.on("message", onMessage);
      }),
  );
  // Loads asked for by any isolate are served by the one database here.
  for (const w of workers) {
    w.on("message", async (msg: FromWorker) => {
      if (msg.type !== "load") return;
      const row = await stage.db.load(msg.key, loadMs);
      w.postMessage({ type: "loaded", id: msg.id, row } satisfies ToWorker);
    });
  }
  try {
    await Promise.all(ready);
    stage.db.resetCounters();
    await stage.resetCost(c);
    const done = workers.map(
      (w) =>
        new Promise<{ times: number[]; errors: string[] }>((resolve, reject) => {
          w.once("error", reject);
          w.on("message", (msg: FromWorker) => {
            if (msg.type === "done") resolve(msg);
          });
        }),
    );
    for (const w of workers) w.postMessage({ type: "go" } satisfies ToWorker);
    const all = await Promise.all(done);
    return { times: all.flatMap((d) => d.times), errors: all.flatMap((d) => d.errors) };
  } finally {
    for (const w of workers) w.postMessage({ type: "close" } satisfies ToWorker);
    await sleep(50);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

export const stampedeTen: Workload = {
  id: "stampede-isolates",
  title: "Stampede, ten isolates",
  async run({ stage, contenders, params, progress }) {
    const n = params.isolates;
    const result: WorkloadResult = {
      id: "stampede-isolates",
      title: `Stampede, ${n} isolates`,
      setup: `${params.stampede} concurrent cold reads of one key split over ${n} worker threads (own library copy + own client each), ${params.stampedeLoadMs} ms loader`,
      columns: columns(n),
      rows: [],
      notes: [],
    };
    for (const c of contenders) {
      progress(`${c.label}: starting ${n} isolates`);
      const { times, errors } = await runIsolates(stage, c, n, params.stampede, params.stampedeLoadMs);
      const cost = await stage.cost(c);
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: {
          loads: stage.db.loads,
          requests: cost.requests,
          requestsPerIsolate: cost.requests / n,
          p50: percentile(times, 50),
          p99: percentile(times, 99),
        },
        note: errors.length ? `${errors.length} reads failed: ${errors[0]}` : undefined,
      });
    }
    return result;
  },
};
