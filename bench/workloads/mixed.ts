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
import { StaleReadDetector } from "../lib/stale";
import { percentile, seededRandom, zipfSampler } from "../lib/stats";
import { newResult, type Workload } from "./workload";

export const mixed: Workload = {
  id: "mixed",
  title: "Zipf mixed reads/writes",
  async run({ stage, contenders, params, progress }) {
    const pct = Math.round(params.writeRatio * 100);
    const result = newResult(mixed, {
      title: `Zipf(${params.zipfS}) mixed ${100 - pct}/${pct}`,
      setup: `${params.mixedKeys} keys, ${params.mixedClients} clients, ${params.mixedSeconds} s each, ${params.loadMs} ms loader, starts cold`,
      columns: [
        { key: "opsPerSec", label: "ops/s", better: "higher", digits: 0 },
        { key: "p50", label: "read p50 ms", better: "lower", digits: 1 },
        { key: "p99", label: "read p99 ms", better: "lower", digits: 1 },
        { key: "loads", label: "loads", better: "lower", digits: 0 },
        { key: "lowerBound", label: "lower bound", digits: 0 },
        { key: "requestsPerOp", label: "Redis req/op", better: "lower", digits: 2 },
        { key: "staleReads", label: "stale reads", better: "lower", digits: 0 },
      ],
      notes: [
        "stale read = started after a write of its key was acknowledged, returned an older version",
      ],
    });
    for (const c of contenders) {
      const cache = await stage.create(c, "mixed");
      const db = stage.db;
      db.delayMs = params.loadMs;
      db.resetCounters();
      await stage.resetCost(c);
      const detector = new StaleReadDetector();
      const seen = new Set<string>();
      const dirty = new Set<string>();
      let lowerBound = 0;
      let ops = 0;
      let errors = 0;
      let firstError = "";
      const readTimes: number[] = [];
      const start = performance.now();
      const deadline = start + params.mixedSeconds * 1000;
      const ticker = setInterval(() => {
        const s = (performance.now() - start) / 1000;
        progress(
          `${c.label}: ${s.toFixed(0)}/${params.mixedSeconds} s, ${ops} ops, ${detector.staleReads} stale`,
        );
      }, 1000);
      const client = async (id: number) => {
        const random = seededRandom(1000 + id);
        const draw = zipfSampler(params.mixedKeys, params.zipfS, random);
        while (performance.now() < deadline) {
          const key = `m:${draw()}`;
          try {
            if (random() < params.writeRatio) {
              const version = db.commit(key);
              await cache.write(key, version);
              detector.acknowledged(key, version);
              dirty.add(key);
            } else {
              // A first read covers any earlier write of the key too.
              if (!seen.has(key)) {
                seen.add(key);
                dirty.delete(key);
                lowerBound++;
              } else if (dirty.delete(key)) lowerBound++;
              const floor = detector.readStarts(key);
              const t = performance.now();
              const row = await cache.get(key, () => db.load(key));
              readTimes.push(performance.now() - t);
              detector.readReturned(floor, row.version);
            }
            ops++;
          } catch (err) {
            errors++;
            firstError ||= err instanceof Error ? err.message : String(err);
          }
        }
      };
      await Promise.all(Array.from({ length: params.mixedClients }, (_, i) => client(i)));
      const elapsed = (performance.now() - start) / 1000;
      clearInterval(ticker);
      await cache.settle();
      const cost = await stage.cost(c);
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: {
          opsPerSec: ops / elapsed,
          p50: percentile(readTimes, 50),
          p99: percentile(readTimes, 99),
          loads: db.loads,
          lowerBound,
          requestsPerOp: ops ? cost.requests / ops : null,
          staleReads: detector.staleReads,
        },
        note:
          [
            db.versionQueries ? `+${db.versionQueries} DB version queries` : "",
            errors ? `${errors} errors: ${firstError}` : "",
          ]
            .filter(Boolean)
            .join("; ") || undefined,
      });
      await cache.close();
    }
    return result;
  },
};
