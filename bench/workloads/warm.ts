/**
 * Warm hits: sequential reads of already-cached keys. Latency p50/p99 and Redis requests per
 * hit, counted by the gateway (or the proxy) for this contender alone.
 */

import { isPeer } from "../lib/result";
import { percentileRatio, ratioText } from "../lib/stats";
import {
  cachedSubjects,
  type HitMeasurement,
  type HitSubject,
  measureHits,
  UPSTASH_COST_COLUMNS,
  upstashCostPerHit,
} from "./hits";
import { newResult, type Workload } from "./workload";

const KEYS = 20;
/** Untimed reads per contender before timing, and timed reads per turn (hits.ts). */
const WARMUP = 100;
const BLOCK = 20;

export const warm: Workload = {
  id: "warm",
  title: "Warm hits",
  async run({ stage, contenders, params, progress }) {
    const result = newResult(warm, {
      setup: `${params.hits} sequential reads over ${KEYS} cached keys per contender, after ${params.jitWarmup > 0 ? `${params.jitWarmup} untimed ${KEYS} at a time (JIT) and ` : ""}${WARMUP} untimed; contenders take turns of ${BLOCK} reads`,
      columns: [
        { key: "p50", label: "p50 ms", better: "lower", digits: 2 },
        { key: "p99", label: "p99 ms", better: "lower", digits: 2 },
        { key: "requestsPerHit", label: "Redis req/hit", better: "lower", digits: 2 },
        { key: "commandsPerHit", label: "commands/hit", better: "lower", digits: 2 },
        ...UPSTASH_COST_COLUMNS,
        { key: "loads", label: "loads", digits: 0 },
      ],
    });
    stage.db.delayMs = params.loadMs; // the version-checked read queries the database per hit
    const keys = Array.from({ length: KEYS }, (_, i) => `warm:${i}`);
    const subjects = await cachedSubjects(stage, contenders, "warm", keys);
    stage.db.resetCounters();
    const measured = await measureHits({
      stage,
      subjects,
      keys,
      hits: params.hits,
      load: (key) => stage.db.load(key),
      warmup: WARMUP,
      jitWarmup: params.jitWarmup,
      block: BLOCK,
      onProgress: (done) => progress(`${done}/${params.hits} hits each, contenders taking turns`),
    });
    const sureness = medianAgainstBestPeer(subjects, measured);
    for (const { contender: c, cache } of subjects) {
      const m = measured.get(c.id);
      if (!m) continue;
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: {
          p50: m.p50,
          p99: m.p99,
          requestsPerHit: m.cost.requests / params.hits,
          commandsPerHit: m.cost.commands / params.hits,
          ...upstashCostPerHit(m.cost, params.hits),
          loads: m.loads,
        },
        // Only the version-checked read queries versions: every query is its own.
        note:
          c.id === "version-checked" && stage.db.versionQueries > 0
            ? `+${(stage.db.versionQueries / (params.hits + WARMUP)).toFixed(2)} DB queries/hit`
            : c.id === "edgecache"
              ? sureness
              : undefined,
      });
      await cache.close();
    }
    return result;
  },
};

/**
 * How sure this run is of edgecache's p50 over the best gateway peer's: one run's ratio moves
 * by a few percent, the size of the gap it measures, so the note gives the 95 % interval of a
 * paired bootstrap over the turns (bench/lib/stats.ts). Undefined without a peer or with one turn.
 */
function medianAgainstBestPeer(
  subjects: readonly HitSubject[],
  measured: ReadonlyMap<string, HitMeasurement>,
): string | undefined {
  const ours = measured.get("edgecache");
  const peers = subjects
    .filter((s) => isPeer(s.contender))
    .map((s) => ({ label: s.contender.label, m: measured.get(s.contender.id) }))
    .filter((p): p is { label: string; m: HitMeasurement } => p.m !== undefined);
  if (!ours || peers.length === 0 || ours.turns.length < 2) return undefined;
  const best = peers.reduce((a, b) => (b.m.p50 < a.m.p50 ? b : a));
  const r = percentileRatio(ours.turns, best.m.turns, 50);
  return `p50 over ${best.label}'s: ${ratioText(r)} (paired bootstrap over ${r.turns} turns)`;
}
