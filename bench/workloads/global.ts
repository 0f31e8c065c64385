/**
 * Hits on an Upstash Global database: the gateway's Global topology (primary 60 ms, read
 * replica 5 ms, replication lag 50 ms; tools/upstash-gateway/topology.ts) on a stage of its own.
 * Each gateway contender reads warm keys; what matters is which server answers: read-only
 * commands (GET, EVAL_RO/EVALSHA_RO) are served by the replica, anything that may write
 * (EVAL/EVALSHA included) by the primary. A bare GET on the replica is the floor.
 *
 * edgecache runs twice: strict (the default: a read-only EVALSHA on the primary) and with
 * `consistency: "replica"` (EVALSHA_RO, which the replica serves).
 */
import { edgecacheReplica } from "../contenders/edgecache";
import { startStage } from "../lib/harness";
import type { ContenderModule } from "../lib/types";
import { cachedSubjects, measureHits, UPSTASH_COST_COLUMNS, upstashCostPerHit } from "./hits";
import { newResult, type Workload } from "./workload";

export const GLOBAL = { primaryLatencyMs: 60, replicaLatencyMs: 5, replicationLagMs: 50 };
const KEYS = 10;

/** The floor: a bare GET of a small string, which the replica serves. */
const bareGet: ContenderModule = {
  id: "bare-get",
  label: "bare GET (replica floor)",
  groupHow: "",
  viaGateway: true,
  async create(env) {
    const redis = env.upstash();
    return {
      async get(key, load) {
        const row = await redis.get<{ key: string; version: number; payload: string }>(
          `${env.prefix}:${key}`,
        );
        if (row) return row;
        const loaded = await load();
        await redis.set(`${env.prefix}:${key}`, loaded);
        return loaded;
      },
      write: async () => undefined,
      invalidateGroup: async () => undefined,
      settle: async () => undefined,
      close: async () => undefined,
    };
  },
};

export const globalTopology: Workload = {
  id: "global",
  title: "Global topology",
  async run({ contenders, params, progress }) {
    const hits = params.globalHits;
    const result = newResult(globalTopology, {
      title: `Global topology (replica ${GLOBAL.replicaLatencyMs} ms, primary ${GLOBAL.primaryLatencyMs} ms, lag ${GLOBAL.replicationLagMs} ms)`,
      setup: `${hits} sequential warm hits over ${KEYS} keys per contender (contenders taking turns of 10, after 20 untimed), regional latency replaced by the topology's`,
      columns: [
        { key: "p50", label: "hit p50 ms", better: "lower", digits: 1 },
        { key: "p99", label: "hit p99 ms", better: "lower", digits: 1 },
        { key: "replicaShare", label: "served by replica", better: "higher", digits: 2 },
        ...UPSTASH_COST_COLUMNS,
      ],
      notes: [
        "edgecache strict: hits on the primary (every acknowledged write seen); replica mode: other clients' writes seen after at most the replication lag, a client's own at once with its sync token",
      ],
    });
    const onGateway = contenders.filter((c) => c.viaGateway);
    const strict = onGateway.findIndex((c) => c.id === "edgecache");
    if (strict >= 0) onGateway.splice(strict + 1, 0, edgecacheReplica);
    onGateway.push(bareGet);
    const stage = await startStage(onGateway, { baseMs: 0, jitterMs: 0 }, progress, GLOBAL);
    try {
      stage.db.delayMs = params.loadMs;
      const keys = Array.from({ length: KEYS }, (_, i) => `gl:${i}`);
      const subjects = await cachedSubjects(stage, onGateway, "global", keys);
      // Let the fills replicate (lag 50 ms) so the replica has them.
      await new Promise((r) => setTimeout(r, GLOBAL.replicationLagMs * 3));
      const measured = await measureHits({
        stage,
        subjects,
        keys,
        hits,
        load: (key) => stage.db.load(key),
        warmup: 20,
        block: 10,
        onProgress: (done) => progress(`${done}/${hits} hits each, contenders taking turns`),
      });
      for (const { contender: c, cache } of subjects) {
        const m = measured.get(c.id);
        if (!m) continue;
        const { cost } = m;
        result.rows.push({
          contender: c.id,
          label: c.label,
          values: {
            p50: m.p50,
            p99: m.p99,
            replicaShare: cost.requests ? (cost.servedByReplica ?? 0) / cost.requests : null,
            ...upstashCostPerHit(cost, hits),
          },
          note:
            c.id === "version-checked" ? `+1 DB query (${params.loadMs} ms) per hit` : undefined,
        });
        await cache.close();
      }
    } finally {
      await stage.close();
    }
    return result;
  },
};
