/**
 * Warm hits: sequential reads of already-cached keys. Latency p50/p99 and Redis requests per
 * hit, counted by the gateway (or the proxy) for this contender alone.
 */

import { measureHits } from "./hits";
import { newResult, type Workload } from "./workload";

const KEYS = 20;

export const warm: Workload = {
  id: "warm",
  title: "Warm hits",
  async run({ stage, contenders, params, progress }) {
    const result = newResult(warm, {
      setup: `${params.hits} sequential reads over ${KEYS} cached keys`,
      columns: [
        { key: "p50", label: "p50 ms", better: "lower", digits: 2 },
        { key: "p99", label: "p99 ms", better: "lower", digits: 2 },
        { key: "requestsPerHit", label: "Redis req/hit", better: "lower", digits: 2 },
        { key: "commandsPerHit", label: "commands/hit", better: "lower", digits: 2 },
        { key: "writesPerHit", label: "writes/hit", better: "lower", digits: 2 },
        { key: "globalLockPerHit", label: "global-lock/hit", better: "lower", digits: 2 },
        { key: "loads", label: "loads", digits: 0 },
      ],
    });
    for (const c of contenders) {
      const cache = await stage.create(c, "warm");
      stage.db.delayMs = params.loadMs; // the version-checked read queries the database per hit
      const keys = Array.from({ length: KEYS }, (_, i) => `warm:${i}`);
      for (const key of keys) await cache.get(key, () => stage.db.load(key, 0));
      await cache.settle();
      // One untimed pass: first requests open connections and load scripts.
      for (const key of keys) await cache.get(key, () => stage.db.load(key, 0));
      await cache.settle();
      stage.db.resetCounters();
      const { p50, p99, cost } = await measureHits({
        stage,
        contender: c,
        cache,
        keys,
        hits: params.hits,
        load: (key) => stage.db.load(key),
        onProgress: (done) => progress(`${c.label}: ${done}/${params.hits} hits`),
        every: 50,
      });
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: {
          p50,
          p99,
          requestsPerHit: cost.requests / params.hits,
          commandsPerHit: cost.commands / params.hits,
          writesPerHit: cost.writing === undefined ? null : cost.writing / params.hits,
          globalLockPerHit: cost.globalLock === undefined ? null : cost.globalLock / params.hits,
          loads: stage.db.loads,
        },
        note:
          stage.db.versionQueries > 0
            ? `+${(stage.db.versionQueries / params.hits).toFixed(2)} DB queries/hit`
            : undefined,
      });
      await cache.close();
    }
    return result;
  },
};
