/**
 * `npm run bench`: edgecache and its peers side by side, in one run, over the same Upstash
 * gateway, the same injected latency (default 3 + 4·random ms = 5 ± 2 ms per round trip), the
 * bench's own redis-server, and the same in-memory database. Prints one table per workload with
 * ratios to the best peer, writes bench/results/latest.json (and .md tables) and docs/bench.svg.
 *
 *   npm run bench                         # full run, ≈3.5 min
 *   npm run bench -- --quick              # ≈30 s
 *   npm run bench -- --only=edgecache,unkey --workloads=warm,stampede
 *   npm run bench -- --latency=3 --jitter=4 --no-write
 *   npm run bench -- --transport=lean     # a thin HTTP client instead of Node's fetch, for all
 *   npm run bench -- --from=bench/results/latest.json   # redraw chart + tables only
 *   npm run bench -- --against=HEAD~1 --only=edgecache,unkey --workloads=warm   # A/B of a change
 */

import { CONTENDERS } from "./contenders/index";
import { FULL, QUICK } from "./lib/params";
import { abRatios } from "./lib/result";
import { extractEngine } from "./lib/revision";
import { type BenchReport, runBench, type Transport, WORKLOADS, writeReport } from "./run";

const flag = (name: string) => process.argv.includes(`--${name}`);
const value = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const list = (name: string) => value(name)?.split(",").filter(Boolean);

if (flag("help")) {
  console.log(`npm run bench -- [--quick] [--only=ids] [--workloads=ids] [--latency=ms] [--jitter=ms] [--transport=fetch|lean] [--no-write] [--from=results.json] [--against=rev]
contenders: ${CONTENDERS.map((c) => c.id).join(", ")} (and aa: edgecache again, for an A/A run)
workloads:  ${WORKLOADS.map((w) => w.id).join(", ")}
--against=rev  also runs the engine of git revision rev (a hash, a tag, HEAD~1) in the same turns,
               prints today's engine over it per column, and writes nothing`);
  process.exit(0);
}

/**
 * Where a run's results go. A lean run is a second view, not the reference: its results go
 * beside the default run's, without a chart.
 */
function outputsFor(transport: Transport | undefined): {
  json: string;
  svg?: string;
  markdown: string;
} {
  return transport === "lean"
    ? { json: "bench/results/lean.json", markdown: "bench/results/lean.md" }
    : {
        json: "bench/results/latest.json",
        svg: "docs/bench.svg",
        markdown: "bench/results/latest.md",
      };
}

// --from=results.json: redraw the chart and tables of a saved run without running anything.
const from = value("from");
if (from) {
  const { readFile } = await import("node:fs/promises");
  const report = JSON.parse(await readFile(from, "utf8")) as BenchReport;
  const { json: _json, ...redrawn } = outputsFor(report.transport);
  await writeReport(report, redrawn);
  console.log(`[bench] redrew ${Object.values(redrawn).join(" and ")} from ${from}`);
  process.exit(0);
}

const tty = process.stdout.isTTY;
let lastProgress = 0;
const progress = (line: string) => {
  if (tty) {
    process.stdout.write(`\r\x1b[2K${line}`);
  } else if (line && performance.now() - lastProgress > 2000) {
    lastProgress = performance.now();
    console.log(`  … ${line}`);
  }
};

const transport = value("transport") ?? "fetch";
if (transport !== "fetch" && transport !== "lean") {
  console.error(`[bench] --transport must be fetch or lean, not "${transport}"`);
  process.exit(1);
}
const outputs = outputsFor(transport);

// --against=<rev>: the engine of another commit beside today's (bench/lib/revision.ts), right
// after it in the table. An experiment, not the reference run: nothing is written.
const against = value("against");
let only = list("only");
let revisionId: string | undefined;
if (against) {
  try {
    revisionId = extractEngine(against).id;
  } catch (error) {
    console.error(`[bench] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  const ids = only ?? CONTENDERS.map((c) => c.id);
  const at = ids.indexOf("edgecache");
  // Named in --only already (to run it first, say): that order stays.
  if (!ids.includes(revisionId)) {
    only =
      at === -1
        ? [...ids, revisionId]
        : [...ids.slice(0, at + 1), revisionId, ...ids.slice(at + 1)];
  }
}
// A quick run never replaces the committed full-run results the READMEs cite.
const write = !flag("no-write") && !revisionId && !flag("quick");

runBench({
  params: flag("quick") ? QUICK : FULL,
  transport,
  latency: { baseMs: Number(value("latency") ?? 3), jitterMs: Number(value("jitter") ?? 4) },
  contenders: only,
  workloads: list("workloads"),
  log: (line) => console.log(tty ? `\r\x1b[2K${line}` : line),
  progress,
  output: write ? outputs : undefined,
})
  .then((report) => {
    if (revisionId) {
      console.log(`\n== A/B: edgecache (this tree) over ${revisionId}, same run`);
      for (const r of abRatios(report.results, revisionId)) {
        const gain = r.better === "lower" ? r.ratio < 1 : r.ratio > 1;
        const mark = r.ratio === 1 ? "=" : gain ? "better" : "worse";
        console.log(
          `${`${r.workload}: ${r.column}`.padEnd(36)} ${fmt(r.ours).padStart(10)} vs ${fmt(r.theirs).padStart(10)}  ×${r.ratio.toFixed(3)}  ${mark}`,
        );
      }
      console.log("   one run: repeat it before trusting a few percent");
    }
    console.log(`[bench] done in ${report.durationS.toFixed(0)} s`);
    if (write) console.log(`[bench] wrote ${Object.values(outputs).join(", ")}`);
  })
  .catch((err: unknown) => {
    console.error(`\n[bench] failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });

function fmt(n: number): string {
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(2);
}
