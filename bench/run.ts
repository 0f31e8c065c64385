/**
 * The bench harness as a function: one stage (own redis-server, one gateway, one latency), every
 * chosen contender through every chosen workload, results returned (and optionally written).
 * bench/index.ts is the CLI; test/node/bench-smoke.test.ts calls this with tiny parameters.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { edgecache, edgecacheWriteThrough } from "./contenders/edgecache";
import { CONTENDERS, contenderById } from "./contenders/index";
import { renderChart } from "./lib/chart";
import { type Latency, startStage } from "./lib/harness";
import { installLeanFetch } from "./lib/lean-fetch";
import type { BenchParams } from "./lib/params";
import { markdownTable, RATIO_NOTE, textTable } from "./lib/report";
import type { WorkloadResult } from "./lib/result";
import type { ContenderModule } from "./lib/types";
import { globalTopology } from "./workloads/global";
import { group } from "./workloads/group";
import { mixed } from "./workloads/mixed";
import { race } from "./workloads/race";
import { stampedeOne, stampedeTen } from "./workloads/stampede";
import { warm } from "./workloads/warm";
import type { Workload } from "./workloads/workload";

export const WORKLOADS: readonly Workload[] = [
  warm,
  stampedeOne,
  stampedeTen,
  mixed,
  group,
  race,
  globalTopology,
];

export interface BenchOptions {
  params: BenchParams;
  latency: Latency;
  /**
   * The contenders' HTTP client: Node's `fetch` (default), or `lean`, a thin one over
   * `node:http` for everyone (bench/lib/lean-fetch.ts says why).
   */
  transport?: Transport;
  /** Contender ids; default all. */
  contenders?: readonly string[];
  /** Workload ids; default all. */
  workloads?: readonly string[];
  log?: (line: string) => void;
  progress?: (line: string) => void;
  /** Where to write results JSON and the SVG chart; omitted = not written. */
  output?: { json: string; svg?: string; markdown?: string };
}

export type Transport = "fetch" | "lean";

export interface BenchReport {
  startedAt: string;
  durationS: number;
  machine: { node: string; cpus: number; platform: string };
  latency: Latency;
  /** Absent in reports written before it existed: Node's fetch. */
  transport?: Transport;
  params: BenchParams;
  contenders: { id: string; label: string }[];
  results: WorkloadResult[];
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const log = options.log ?? (() => undefined);
  const progress = options.progress ?? (() => undefined);
  const contenders: ContenderModule[] = options.contenders
    ? options.contenders.map(contenderById)
    : [...CONTENDERS];
  const workloads = options.workloads
    ? options.workloads.map((id) => {
        const w = WORKLOADS.find((x) => x.id === id);
        if (!w) {
          throw new Error(
            `unknown workload "${id}"; choose from ${WORKLOADS.map((x) => x.id).join(", ")}`,
          );
        }
        return w;
      })
    : [...WORKLOADS];
  if (options.transport === "lean") {
    // The isolate workers read it when they start (bench/lib/isolate-worker.ts).
    process.env.BENCH_TRANSPORT = "lean";
    installLeanFetch();
  }
  const startedAt = new Date();
  const t0 = performance.now();
  // edgecache's write-through variant has a row of its own in the mixed workload (mixed.ts).
  const staged = contenders.some((c) => c.id === edgecache.id)
    ? [...contenders, edgecacheWriteThrough]
    : contenders;
  const stage = await startStage(staged, options.latency, log);
  const results: WorkloadResult[] = [];
  try {
    for (const workload of workloads) {
      const w0 = performance.now();
      log(`${workload.title}…`);
      const result = await workload.run({
        stage,
        contenders,
        params: options.params,
        progress: (line) => progress(`[${workload.id}] ${line}`),
      });
      progress("");
      for (const row of result.rows) {
        const c = contenders.find((x) => x.id === row.contender);
        row.transport ??= c?.viaGateway === false ? "resp" : "gateway";
      }
      results.push(result);
      log(`${textTable(result)}\n   (${((performance.now() - w0) / 1000).toFixed(1)} s)\n`);
    }
  } finally {
    await stage.close();
  }
  const { cpus, platform } = await import("node:os");
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    durationS: (performance.now() - t0) / 1000,
    machine: { node: process.version, cpus: cpus().length, platform: platform() },
    latency: options.latency,
    transport: options.transport ?? "fetch",
    params: options.params,
    contenders: contenders.map((c) => ({ id: c.id, label: c.label })),
    results,
  };
  if (options.output) await writeReport(report, options.output);
  return report;
}

/** Writes what `output` names of a report: the results JSON, the SVG chart, the markdown tables. */
export async function writeReport(
  report: BenchReport,
  output: { json?: string; svg?: string; markdown?: string },
): Promise<void> {
  const { json, svg, markdown } = output;
  const subtitle = `${report.startedAt.slice(0, 16)}Z · gateway ${report.latency.baseMs} + ${report.latency.jitterMs}·random ms per round trip (the same seeded jitter for all) · ${report.transport === "lean" ? "lean HTTP client (node:http)" : "Node's fetch"} · own redis-server · ${report.machine.cpus} shared cores`;
  if (json) {
    await mkdir(dirname(json), { recursive: true });
    await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  }
  if (svg) {
    await mkdir(dirname(svg), { recursive: true });
    await writeFile(svg, renderChart(report.results, subtitle));
  }
  if (markdown) {
    const tables = report.results.map(markdownTable).join("\n");
    await writeFile(markdown, `${subtitle}\n\n${tables}\n${RATIO_NOTE}\n`);
  }
}
