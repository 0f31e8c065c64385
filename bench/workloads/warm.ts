/**
 * Warm hits: sequential reads of already-cached keys. Latency p50/p99 and Redis requests per
 * hit, counted by the gateway (or the proxy) for this contender alone.
 */

import { cachedSubjects, measureHits, UPSTASH_COST_COLUMNS, upstashCostPerHit } from "./hits";
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
      setup: `${params.hits} sequential reads over ${KEYS} cached keys per contender, after ${WARMUP} untimed; contenders take turns of ${BLOCK} reads`,
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
      block: BLOCK,
      onProgress: (done) => progress(`${done}/${params.hits} hits each, contenders taking turns`),
    });
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
            : undefined,
      });
      await cache.close();
    }
    return result;
  },
};
