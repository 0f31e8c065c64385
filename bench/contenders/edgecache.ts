/**
 * edgecache as the Worker uses it: an engine per request (constructed inside each call) over
 * the bench's @upstash/redis client (auto-pipelining off, as on the Worker's request path,
 * src/redis/client.ts, and for every contender), a version key per entry
 * (`versionOf: row.version`), fills handed to
 * `waitUntil`, and writes that apply the committed version and delete the key in one request.
 * Only the engine's public API (src/cache/index.ts) is used, so the bench keeps working while
 * the engine is rewritten.
 */
import { EdgeCache } from "../../src/cache/index";
import { Background } from "../lib/background";
import type { Row } from "../lib/db";
import { enginePath } from "../lib/revision";
import type { ContenderModule } from "../lib/types";

export const edgecache: ContenderModule = edgecacheContender({
  id: "edgecache",
  label: "edgecache",
  consistency: "strict",
  engine: async () => EdgeCache,
});

/**
 * edgecache with its hits in `replica` mode (`EvalshaRo`, served by the nearest read replica of
 * a Global database): only the Global workload runs it, beside the strict row.
 */
export const edgecacheReplica: ContenderModule = edgecacheContender({
  id: "edgecache-replica",
  label: "edgecache, replica mode",
  consistency: "replica",
  engine: async () => EdgeCache,
});

/**
 * edgecache with its other write strategy: a write caches the row it committed (`set`, the
 * version-checked write-through of src/cache/README.md) instead of deleting the entry, so the
 * reads after it hit. Only the mixed workload runs it, beside the invalidating row, which the
 * ratios are about: the peers are measured with the invalidation their READMEs show.
 */
export const edgecacheWriteThrough: ContenderModule = edgecacheContender({
  id: "edgecache-write-through",
  label: "edgecache, write-through",
  consistency: "strict",
  engine: async () => EdgeCache,
  writeThrough: true,
});

/**
 * The engine as it was at commit `sha` (bench/lib/revision.ts extracted it), wired exactly like
 * today's: `npm run bench -- --against=<rev>` runs it beside the current one.
 */
export function edgecacheAt(sha: string): ContenderModule {
  return edgecacheContender({
    id: `edgecache@${sha}`,
    label: `edgecache @ ${sha}`,
    consistency: "strict",
    // Typed as today's engine: an A/B compares revisions of the same public API.
    engine: async () =>
      ((await import(enginePath(sha))) as { EdgeCache: typeof EdgeCache }).EdgeCache,
  });
}

function edgecacheContender(c: {
  id: string;
  label: string;
  consistency: "strict" | "replica";
  engine: () => Promise<typeof EdgeCache>;
  writeThrough?: boolean;
}): ContenderModule {
  const { consistency } = c;
  const entry = (waitUntil: (p: Promise<unknown>) => void, tags?: readonly string[]) => ({
    ttl: 300_000,
    versionKey: undefined as string | undefined,
    versionOf: (row: Row) => row.version,
    tags,
    waitUntil,
    consistency,
  });
  return {
    id: c.id,
    label: c.label,
    groupHow: "invalidateTags: one tag-counter bump, O(1) whatever the entry count",
    viaGateway: true,
    async create(env) {
      const Engine = await c.engine();
      const redis = env.upstash();
      const background = new Background();
      const engine = () => new Engine({ redis, prefix: env.prefix, onError: () => undefined });
      return {
        async get(key, load, options) {
          const opts = { ...entry(background.waitUntil, options?.tags), versionKey: key };
          const result = await engine().getOrLoad<Row>(key, load, opts);
          return result.value;
        },
        async write(key, version, row) {
          if (c.writeThrough) {
            // Cached if no newer version is known; any load in flight is revoked.
            await engine().set(key, row, { ...entry(background.waitUntil), versionKey: key });
          } else {
            await engine().apply({ keys: [key], versions: { [key]: version } });
          }
        },
        async invalidateGroup(tag) {
          await engine().invalidateTags(tag);
        },
        settle: () => background.settle(),
        async close() {
          await background.settle();
        },
      };
    },
  };
}
