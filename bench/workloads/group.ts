/**
 * Group invalidation: N entries share one tag; the group changes (every row gets a new version
 * in the database), then the group is invalidated. Time until the call is acknowledged, Redis
 * requests it took, and a check: a sample of the group read afterwards must all be new.
 * Libraries without tags delete the group's keys from a list the application keeps.
 */
import { newResult, type Workload } from "./workload";

const SAMPLE = 200;
const FILL_CONCURRENCY = 100;

export const group: Workload = {
  id: "group",
  title: "Group invalidation",
  async run({ stage, contenders, params, progress }) {
    const result = newResult(group, {
      setup: `${params.groupSize} entries tagged "group", invalidated at once; ${SAMPLE} sampled after`,
      columns: [
        { key: "ms", label: "ack ms", better: "lower", digits: 1 },
        { key: "requests", label: "Redis req", better: "lower", digits: 0 },
        { key: "commands", label: "commands", better: "lower", digits: 0 },
        { key: "staleAfter", label: `stale of ${SAMPLE}`, better: "lower", digits: 0 },
      ],
    });
    for (const c of contenders) {
      const cache = await stage.create(c, "group");
      const keys = Array.from({ length: params.groupSize }, (_, i) => `g:${i}`);
      const tags = ["group"];
      let filled = 0;
      await Promise.all(
        Array.from({ length: FILL_CONCURRENCY }, async (_, w) => {
          for (let i = w; i < keys.length; i += FILL_CONCURRENCY) {
            const key = keys[i] as string;
            await cache.get(key, () => stage.db.load(key, 0), { tags });
            if (++filled % 1000 === 0) progress(`${c.label}: filled ${filled}/${keys.length}`);
          }
        }),
      );
      await cache.settle();
      for (const key of keys) stage.db.commit(key);
      // An unrelated group first: script loading and connection setup are not the group's cost.
      await cache.invalidateGroup("warmup", []);
      await cache.settle();
      await stage.resetCost(c);
      progress(`${c.label}: invalidating ${keys.length} entries`);
      const t = performance.now();
      await cache.invalidateGroup("group", keys);
      const ms = performance.now() - t;
      await cache.settle();
      const cost = await stage.cost(c);
      let staleAfter = 0;
      const sample = Array.from(
        { length: SAMPLE },
        (_, i) => keys[Math.floor((i * keys.length) / SAMPLE)] as string,
      );
      for (let i = 0; i < sample.length; i += 20) {
        await Promise.all(
          sample.slice(i, i + 20).map(async (key) => {
            const row = await cache.get(key, () => stage.db.load(key, 0), { tags });
            if (row.version < stage.db.truth(key)) staleAfter++;
          }),
        );
      }
      result.rows.push({
        contender: c.id,
        label: c.label,
        values: { ms, requests: cost.requests, commands: cost.commands, staleAfter },
        note: c.groupHow,
      });
      await cache.close();
    }
    return result;
  },
};
