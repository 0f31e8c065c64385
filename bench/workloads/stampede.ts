/**
 * The stampede: N concurrent reads of one cold key with a slow loader.
 * - one isolate: all N reads through one contender instance (one client, one copy of the
 *   library's in-process state), as concurrent requests of one Workers isolate;
 * - ten isolates: N/10 reads in each of ten worker threads, each with its own copy of the
 *   library (module scope included) and its own client, the database shared.
 * Loads, Redis requests (all isolates together) and read latency p50/p99.
 */
import type { Worker } from "node:worker_threads";
import type { Stage } from "../lib/harness";
import type { FromWorker, IsolateJob, ToWorker } from "../lib/isolate-worker";
import type { WorkloadResult } from "../lib/result";
import { percentile } from "../lib/stats";
import { tsWorker } from "../lib/ts-worker";
import type { ContenderModule } from "../lib/types";
import { newResult, type Workload } from "./workload";

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
    const result = newResult(stampedeOne, {
      setup: `${params.stampede} concurrent cold reads of one key, ${params.stampedeLoadMs} ms loader, one instance; median of ${params.stampedeRepeats} runs`,
      columns: columns(1),
    });
    for (const c of contenders) {
      const cache = await stage.create(c, "stampede1");
      await cache.get("warmup", () => stage.db.load("warmup", 0));
      await cache.settle();
      // Repeated on fresh keys; the repetition with the median p50 is reported (this figure
      // swings with the machine's load more than any other).
      const runs: { loads: number; requests: number; p50: number; p99: number }[] = [];
      for (let rep = 0; rep < params.stampedeRepeats; rep++) {
        progress(
          `${c.label}: ${params.stampede} concurrent cold reads (${rep + 1}/${params.stampedeRepeats})`,
        );
        stage.db.resetCounters();
        await stage.resetCost(c);
        const key = `cold:one:${rep}`;
        const times = await Promise.all(
          Array.from({ length: params.stampede }, async () => {
            const t = performance.now();
            await cache.get(key, () => stage.db.load(key, params.stampedeLoadMs));
            return performance.now() - t;
          }),
        );
        await cache.settle();
        const cost = await stage.cost(c);
        runs.push({
          loads: stage.db.loads,
          requests: cost.requests,
          p50: percentile(times, 50),
          p99: percentile(times, 99),
        });
      }
      runs.sort((a, b) => a.p50 - b.p50);
      const median = runs[Math.floor(runs.length / 2)] ?? runs[0];
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: { ...median },
        note:
          runs.length > 1
            ? `p50 of the ${runs.length} runs: ${runs.map((r) => r.p50.toFixed(0)).join(", ")} ms`
            : undefined,
      });
      await cache.close();
    }
    return result;
  },
};

/** A pool of worker threads, each one isolate; reused across contenders. */
class IsolatePool {
  readonly #workers: Worker[];
  readonly #stage: Stage;
  #loadMs = 0;

  constructor(stage: Stage, count: number) {
    this.#stage = stage;
    this.#workers = Array.from({ length: count }, () =>
      tsWorker(new URL("../lib/isolate-worker.ts", import.meta.url)),
    );
    // Loads and version queries asked by any isolate are served by the one database here.
    for (const w of this.#workers) {
      w.on("message", async (msg: FromWorker) => {
        if (msg.type === "load") {
          // Warm-up loads take as long as the measured ones: an isolate that served this prefix
          // before knows how long its loads take (what a lease holder announces to waiters).
          const row = await stage.db.load(msg.key, this.#loadMs);
          w.postMessage({ type: "answer", id: msg.id, row } satisfies ToWorker);
        } else if (msg.type === "version") {
          const version = await stage.db.version(msg.key);
          w.postMessage({ type: "answer", id: msg.id, version } satisfies ToWorker);
        }
      });
    }
  }

  /** Resolves with each worker's next message of `type` (rejects on "failed" or a crash). */
  #next<T extends FromWorker["type"]>(type: T): Promise<Extract<FromWorker, { type: T }>[]> {
    return Promise.all(
      this.#workers.map(
        (w) =>
          new Promise<Extract<FromWorker, { type: T }>>((resolve, reject) => {
            const onMessage = (msg: FromWorker) => {
              if (msg.type === type || msg.type === "failed") {
                w.off("message", onMessage);
                w.off("error", reject);
                if (msg.type === "failed") reject(new Error(`isolate: ${msg.message}`));
                else resolve(msg as Extract<FromWorker, { type: T }>);
              }
            };
            w.on("message", onMessage);
            w.once("error", reject);
          }),
      ),
    );
  }

  booted(): Promise<unknown> {
    return this.#next("ready");
  }

  /** Builds `c` in every isolate, then fires `reads` cold reads of one key split over them. */
  async run(c: ContenderModule, reads: number, loadMs: number) {
    const n = this.#workers.length;
    const prefix = `s10-${Math.random().toString(36).slice(2, 10)}`;
    this.#loadMs = loadMs;
    const ready = this.#next("ready");
    this.#workers.forEach((w, i) => {
      const job: IsolateJob = {
        contenderId: c.id,
        gatewayUrl: this.#stage.gatewayUrl,
        token: this.#stage.tokenOf(c),
        proxyUrl: this.#stage.proxyUrl,
        prefix,
        key: "cold:ten",
        reads: Math.floor(reads / n) + (i < reads % n ? 1 : 0),
      };
      w.postMessage({ type: "prepare", job } satisfies ToWorker);
    });
    await ready;
    await sleep(100);
    this.#stage.db.resetCounters();
    await this.#stage.resetCost(c);
    const done = this.#next("done");
    for (const w of this.#workers) w.postMessage({ type: "go" } satisfies ToWorker);
    const all = await done;
    const released = this.#next("released");
    for (const w of this.#workers) w.postMessage({ type: "release" } satisfies ToWorker);
    await released;
    return { times: all.flatMap((d) => d.times), errors: all.flatMap((d) => d.errors) };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

export const stampedeTen: Workload = {
  id: "stampede-isolates",
  title: "Stampede, ten isolates",
  async run({ stage, contenders, params, progress }) {
    const n = params.isolates;
    const result = newResult(stampedeTen, {
      title: `Stampede, ${n} isolates`,
      setup: `${params.stampede} concurrent cold reads of one key split over ${n} worker threads (own library copy + own client each), ${params.stampedeLoadMs} ms loader`,
      columns: columns(n),
    });
    if (n < 1) return { ...result, setup: "skipped (isolates = 0)" };
    progress(`booting ${n} isolates (worker threads)`);
    const pool = new IsolatePool(stage, n);
    try {
      await pool.booted();
      for (const c of contenders) {
        progress(`${c.label}: ${params.stampede} cold reads over ${n} isolates`);
        const { times, errors } = await pool.run(c, params.stampede, params.stampedeLoadMs);
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
    } finally {
      await pool.close();
    }
    return result;
  },
};
