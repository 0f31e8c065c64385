/**
 * The read/write race, N rounds on fresh keys: a reader misses and loads v1 slowly; while it
 * loads, a writer commits v2 and invalidates (acknowledged); a second read starts right then
 * (it must not get v1: "stale during load"); the first reader finishes (and fills whatever the
 * library fills). Then a new read: if it answers v1, the cache kept a stale set ("stale after").
 * Rounds run ten at a time on distinct keys.
 */
import { newResult, type Workload } from "./workload";

const PARALLEL = 10;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const race: Workload = {
  id: "race",
  title: "Read/write race",
  async run({ stage, contenders, params, progress }) {
    const result = newResult(race, {
      setup: `${params.raceRounds} rounds: reader loads v1 in ${params.raceLoadMs} ms, writer commits v2 and invalidates meanwhile, then a new read`,
      columns: [
        { key: "staleDuring", label: "stale during load", better: "lower", digits: 0 },
        { key: "staleRounds", label: "stale after", better: "lower", digits: 0 },
        { key: "rounds", label: "rounds", digits: 0 },
      ],
      notes: [
        "stale during load = a read started after the acknowledged write of v2, while the old load still ran, answered v1",
        "stale after = once the old load finished, a new read still answers v1 (a stale set)",
      ],
    });
    for (const c of contenders) {
      const cache = await stage.create(c, "race");
      let staleRounds = 0;
      let staleDuring = 0;
      let done = 0;
      const round = async (i: number) => {
        const key = `race:${i}`;
        let loading!: () => void;
        const loadStarted = new Promise<void>((resolve) => {
          loading = resolve;
        });
        const reader = cache.get(key, () => {
          loading();
          return stage.db.load(key, params.raceLoadMs);
        });
        // The writer goes once the reader has missed and its load has snapshotted v1.
        // (Bounded: a contender that never calls the loader must not hang the bench.)
        await Promise.race([loadStarted, sleep(2_000)]);
        const v2 = stage.db.commit(key);
        await cache.write(key, v2, stage.db.row(key));
        // A read that starts after the acknowledgment while the old load is still running must
        // not be handed that load's v1 (e.g. by joining it as an in-isolate flight).
        const during = await cache.get(key, () => stage.db.load(key, 0));
        if (during.version < v2) staleDuring++;
        await reader;
        await cache.settle();
        const after = await cache.get(key, () => stage.db.load(key, 0));
        if (after.version < v2) staleRounds++;
        done++;
      };
      for (let i = 0; i < params.raceRounds; i += PARALLEL) {
        const batch = [];
        for (let j = i; j < Math.min(i + PARALLEL, params.raceRounds); j++) batch.push(round(j));
        await Promise.all(batch);
        progress(`${c.label}: ${done}/${params.raceRounds} rounds, ${staleRounds} stale`);
      }
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: { staleDuring, staleRounds, rounds: params.raceRounds },
        note:
          c.id === "version-checked"
            ? "may hold v1 but never serves it (checks the DB version on every read)"
            : undefined,
      });
      await cache.close();
    }
    return result;
  },
};
