/**
 * Zipf(s) mixed reads and writes over many keys, many clients, a fixed duration. Every client
 * draws from its own seeded sequence, so every contender sees the same key popularity.
 *
 * Stale read (the correctness column): a read that STARTED after a write of its key was
 * acknowledged (the contender's write() resolved) and returned an older version than that
 * write's. Reads racing an unacknowledged write are not counted: any cache may answer either.
 *
 * Lower bound of loads: what any cache has to load here — the distinct keys read (the run
 * starts cold) plus the invalidations that were followed by a read of their key. A cache that
 * serves stale reads can load less than that: it skipped loads it owed.
 */

import { edgecacheWriteThrough } from "../contenders/edgecache";
import type { MemoryDb } from "../lib/db";
import type { BenchParams } from "../lib/params";
import { isPeer, isSubject } from "../lib/result";
import { StaleReadDetector } from "../lib/stale";
import { percentile, percentileRatio, ratioText, seededRandom, zipfSampler } from "../lib/stats";
import type { Contender, ContenderModule } from "../lib/types";
import { newResult, type Workload } from "./workload";

export const mixed: Workload = {
  id: "mixed",
  title: "Zipf mixed reads/writes",
  async run({ stage, contenders, params, progress }) {
    const pct = Math.round(params.writeRatio * 100);
    const result = newResult(mixed, {
      title: `Zipf(${params.zipfS}) mixed ${100 - pct}/${pct}`,
      setup: `${params.mixedKeys} keys, ${params.mixedClients} clients, ${params.mixedSeconds} s each in ${params.mixedSlices} turns (contenders take turns${params.mixedUntimedTurns > 0 ? `, after ${params.mixedUntimedTurns} untimed` : ""}), ${params.loadMs} ms loader, starts cold`,
      columns: [
        { key: "opsPerSec", label: "ops/s", better: "higher", digits: 0 },
        { key: "p50", label: "read p50 ms", better: "lower", digits: 1 },
        { key: "p99", label: "read p99 ms", better: "lower", digits: 1 },
        { key: "loads", label: "loads", better: "lower", digits: 0 },
        { key: "lowerBound", label: "lower bound", digits: 0 },
        { key: "requestsPerOp", label: "Redis req/op", better: "lower", digits: 2 },
        { key: "commandsPerOp", label: "Redis cmd/op", better: "lower", digits: 2 },
        { key: "cpuPerOp", label: "client CPU µs/op", better: "lower", digits: 0 },
        { key: "staleReads", label: "stale reads", better: "lower", digits: 0 },
      ],
      notes: [
        "stale read = started after a write of its key was acknowledged, returned an older version",
        "client CPU = busy time of the clients' event loop per operation (the gateway has its own thread); the run is CPU-bound, so ops/s follows it",
        "Redis req/op = HTTP requests (a pipeline is one); cmd/op = the commands they carried. Every contender's @upstash/redis runs with auto-pipelining off: a Worker's requests cannot share one /pipeline request (test/node/workerd-pipelining.test.ts)",
      ],
    });
    const db = stage.db;
    db.delayMs = params.loadMs;
    const runs: Run[] = [];
    // edgecache's other write strategy beside it (a row of its own, never a peer): the write
    // caches the committed row instead of deleting the entry.
    const strict = contenders.findIndex((c) => c.id === "edgecache");
    const measured =
      strict < 0 || !stage.has(edgecacheWriteThrough)
        ? contenders
        : [
            ...contenders.slice(0, strict + 1),
            edgecacheWriteThrough,
            ...contenders.slice(strict + 1),
          ];
    for (const c of measured) {
      const cache = await stage.create(c, "mixed");
      await stage.resetCost(c);
      runs.push({
        c,
        cache,
        db,
        keyPrefix: "m:",
        detector: new StaleReadDetector(),
        seen: new Set(),
        dirty: new Set(),
        lowerBound: 0,
        ops: 0,
        timedOps: 0,
        timing: true,
        errors: 0,
        firstError: "",
        readTimes: [],
        turnReadTimes: [],
        elapsedMs: 0,
        busyMs: 0,
        turnOpsPerSec: [],
        loads: 0,
        versionQueries: 0,
        // Each client keeps its own seeded sequence across turns: the same keys for everyone.
        clients: Array.from({ length: params.mixedClients }, (_, id) => {
          const random = seededRandom(1000 + id);
          return { random, draw: zipfSampler(params.mixedKeys, params.zipfS, random) };
        }),
      });
    }
    // Untimed warm-up, each contender in turn, on keys the measured turns never read (its own
    // prefix, "w:" keys, other client sequences): JIT, connections and the database's code
    // paths are warm for everyone before the first timed turn, and the measured run still
    // starts cold.
    for (const run of runs) {
      if (params.mixedWarmupSeconds <= 0) break;
      progress(`${run.c.label}: warm-up`);
      const warm: Run = {
        ...run,
        cache: await stage.create(run.c, "mixed-warmup"),
        keyPrefix: "w:",
        detector: new StaleReadDetector(),
        seen: new Set(),
        dirty: new Set(),
        readTimes: [],
        turnReadTimes: [],
        turnOpsPerSec: [], // not the measured run's: the warm-up is no turn
        clients: run.clients.map((_, id) => {
          const random = seededRandom(9000 + id);
          return { random, draw: zipfSampler(params.mixedKeys, params.zipfS, random) };
        }),
      };
      const deadline = performance.now() + params.mixedWarmupSeconds * 1000;
      await Promise.all(warm.clients.map((client) => drive(warm, client, deadline, params)));
      await warm.cache.settle();
      await warm.cache.close();
    }
    for (const run of runs) await stage.resetCost(run.c);

    const sliceMs = (params.mixedSeconds * 1000) / params.mixedSlices;
    const turns = params.mixedUntimedTurns + params.mixedSlices;
    for (let turn = 0; turn < turns; turn++) {
      // Rotate who goes first, so no contender always follows the same one. The first turns
      // run untimed (mixedUntimedTurns): the first slot of the first turn measured slower,
      // whoever had it, and that was always the first contender listed.
      const order = runs.map((_, i) => runs[(i + turn) % runs.length] as Run);
      const slice = turn - params.mixedUntimedTurns;
      const timed = slice >= 0;
      for (const run of order) {
        run.timing = timed;
        const loads0 = db.loads;
        const versions0 = db.versionQueries;
        const ops0 = run.ops;
        const start = performance.now();
        const elu0 = performance.eventLoopUtilization();
        const deadline = start + sliceMs;
        if (timed) run.turnReadTimes.push([]);
        const ticker = setInterval(() => {
          progress(
            `${run.c.label}: ${timed ? `turn ${slice + 1}/${params.mixedSlices}` : "untimed turn"}, ${run.ops} ops, ${run.detector.staleReads} stale`,
          );
        }, 1000);
        await Promise.all(run.clients.map((client) => drive(run, client, deadline, params)));
        if (timed) {
          run.elapsedMs += performance.now() - start;
          run.timedOps += run.ops - ops0;
          run.turnOpsPerSec.push((run.ops - ops0) / ((performance.now() - start) / 1000));
          run.busyMs += performance.eventLoopUtilization(elu0).active;
        }
        clearInterval(ticker);
        // Its fills and refreshes land before the next contender's turn (and are its own).
        await run.cache.settle();
        run.loads += db.loads - loads0;
        run.versionQueries += db.versionQueries - versions0;
      }
    }
    const paired = turnRatios(runs);
    const tail = tailRatio(runs);
    for (const run of runs) {
      const cost = await stage.cost(run.c);
      result.rows.push({
        contender: run.c.id,
        label: run.c.label,
        values: {
          opsPerSec: run.timedOps / (run.elapsedMs / 1000),
          p50: percentile(run.readTimes, 50),
          p99: percentile(run.readTimes, 99),
          loads: run.loads,
          lowerBound: run.lowerBound,
          requestsPerOp: run.ops ? cost.requests / run.ops : null,
          commandsPerOp: run.ops ? cost.commands / run.ops : null,
          cpuPerOp: run.timedOps ? (run.busyMs * 1000) / run.timedOps : null,
          staleReads: run.detector.staleReads,
        },
        note:
          [
            run === paired?.run ? paired.text : "",
            run === tail?.run ? tail.text : "",
            run.versionQueries ? `+${run.versionQueries} DB version queries` : "",
            run.errors ? `${run.errors} errors: ${run.firstError}` : "",
          ]
            .filter(Boolean)
            .join("; ") || undefined,
      });
      await run.cache.close();
    }
    return result;
  },
};

/**
 * edgecache's ops/s against the best peer's (the peer with the most ops/s in all), turn by turn:
 * each pair of turns ran within seconds of each other, so the spread of these ratios is the
 * run's own noise, which the ratio of the totals hides. Peers: the other caches on the gateway.
 */
function turnRatios(runs: Run[]): { run: Run; text: string } | null {
  const subject = runs.find((r) => isSubject(r.c.id));
  const peers = runs.filter((r) => isPeer(r.c));
  if (!subject || peers.length === 0 || subject.turnOpsPerSec.length < 2) return null;
  const total = (r: Run) => r.timedOps / r.elapsedMs;
  const best = peers.reduce((a, b) => (total(b) > total(a) ? b : a));
  const ratios = subject.turnOpsPerSec
    .map((ops, i) => ops / (best.turnOpsPerSec[i] ?? Number.NaN))
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  if (ratios.length === 0) return null;
  const x = (v: number | undefined) => `×${(v ?? Number.NaN).toFixed(2)}`;
  return {
    run: subject,
    text: `ops/s turn by turn against ${best.c.label}: median ${x(percentile(ratios, 50))}, ${x(ratios[0])}–${x(ratios[ratios.length - 1])} over ${ratios.length} turns`,
  };
}

/**
 * edgecache's read p99 over the best peer's (the lowest p99 among the other caches on the
 * gateway), with a 95 % interval from a paired bootstrap over the turns: whether one run's tail
 * gap is real or the run's noise (bench/lib/stats.ts).
 */
function tailRatio(runs: Run[]): { run: Run; text: string } | null {
  const subject = runs.find((r) => isSubject(r.c.id));
  const peers = runs.filter((r) => isPeer(r.c));
  if (!subject || peers.length === 0 || subject.turnReadTimes.length < 2) return null;
  const p99 = (r: Run) => percentile(r.readTimes, 99);
  const best = peers.reduce((a, b) => (p99(b) < p99(a) ? b : a));
  const r = percentileRatio(subject.turnReadTimes, best.turnReadTimes, 99);
  return {
    run: subject,
    text: `read p99 over ${best.c.label}'s: ${ratioText(r)} (paired bootstrap over ${r.turns} turns)`,
  };
}

/** One contender's state across its turns. */
interface Run {
  c: ContenderModule;
  cache: Contender;
  db: MemoryDb;
  /** Prefix of the keys read and written ("m:"; "w:" in the warm-up). */
  keyPrefix: string;
  detector: StaleReadDetector;
  /** Keys read at least once, and keys written since their last read: the lower bound. */
  seen: Set<string>;
  dirty: Set<string>;
  lowerBound: number;
  /** Every operation (requests per op divide by these: the gateway counts every turn). */
  ops: number;
  /** Operations of the timed turns (ops/s, CPU per op). */
  timedOps: number;
  /** In a timed turn: reads record their latency. */
  timing: boolean;
  errors: number;
  firstError: string;
  readTimes: number[];
  /** The same latencies, turn by turn (the pairs of tailRatio's bootstrap). */
  turnReadTimes: number[][];
  elapsedMs: number;
  /** Event-loop busy time of this process's main thread during the turns. */
  busyMs: number;
  /** ops/s of each turn, in turn order (turnRatios pairs them). */
  turnOpsPerSec: number[];
  loads: number;
  versionQueries: number;
  clients: { random: () => number; draw: () => number }[];
}

/** One client's loop until `deadline`: Zipf keys, `writeRatio` writes, reads timed and judged. */
async function drive(
  run: Run,
  client: { random: () => number; draw: () => number },
  deadline: number,
  params: BenchParams,
): Promise<void> {
  const { cache, detector, seen, dirty } = run;
  const { random, draw } = client;
  while (performance.now() < deadline) {
    const key = `${run.keyPrefix}${draw()}`;
    try {
      if (random() < params.writeRatio) {
        const version = run.db.commit(key);
        await cache.write(key, version, run.db.row(key));
        detector.acknowledged(key, version);
        dirty.add(key);
      } else {
        // A first read covers any earlier write of the key too.
        if (!seen.has(key)) {
          seen.add(key);
          dirty.delete(key);
          run.lowerBound++;
        } else if (dirty.delete(key)) run.lowerBound++;
        const floor = detector.readStarts(key);
        const t = performance.now();
        const row = await cache.get(key, () => run.db.load(key));
        if (run.timing) {
          const ms = performance.now() - t;
          run.readTimes.push(ms);
          run.turnReadTimes.at(-1)?.push(ms);
        }
        detector.readReturned(floor, row.version);
      }
      run.ops++;
    } catch (err) {
      run.errors++;
      run.firstError ||= err instanceof Error ? err.message : String(err);
    }
  }
}
