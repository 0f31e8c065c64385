/**
 * The workload of `npm run bench:eviction` (and of the eviction test): Zipf-distributed reads
 * of product-like rows through the engine, with a small share of writes whose cache change is
 * acknowledged before the next operation on that row counts it. Every read is checked against
 * the newest acknowledged write: a value older than that is a stale read (must stay 0).
 */
import { prng } from "../db/prng";
import type { EdgeCache } from "../src/cache";
import { zipfSampler } from "./lib/stats";

export interface Row {
  id: number;
  version: number;
  category: number;
  pad: string;
}

export interface WorkloadOptions {
  /** Distinct rows (products). */
  keys: number;
  /** Operations in total (reads + writes), the same sequence for a given seed. */
  ops: number;
  /** Zipf exponent s: P(rank r) ∝ 1 / r^s. */
  zipf: number;
  /** Share of operations that are writes (0..1). */
  writeShare: number;
  /** Concurrent lanes, each with its own engine (like isolates). */
  concurrency: number;
  seed: number;
  /** Bytes of padding per row, so entries have a realistic size. */
  payloadBytes: number;
  /** Tag groups (categories); a tag write invalidates one of them. */
  categories: number;
  /** The first `warmup` operations fill the cache and are checked but not counted in
   * `reads`, `byStatus`, `hitRatio` and `loads` (steady state, not cold start). Default 0. */
  warmup?: number;
  /** Called every `progressEvery` operations. */
  onProgress?: (done: number, total: number) => void;
  progressEvery?: number;
}

export interface WorkloadResult {
  /** Reads counted (after the warmup). */
  reads: number;
  writes: number;
  /** Reads answered from Redis (HIT or STALE) / all reads. */
  hitRatio: number;
  byStatus: Record<string, number>;
  /** Loader calls after the warmup (= Postgres reads it would have cost). */
  loads: number;
  /** Reads (warmup included) that returned a version older than the newest acknowledged
   * write at their start. */
  staleReads: number;
  staleExamples: string[];
  /** Writes whose cache change failed (not acknowledged; an outbox would retry them). */
  writeErrors: number;
  /** Engine-reported faults (BYPASS, failed fills) seen through `onError`. */
  engineErrors: number;
}

type WriteVia = "version" | "tag" | "write-through";
type Op =
  | { kind: "read"; id: number; flavor: "detail" | "slug" }
  | { kind: "write"; id: number; via: WriteVia };

function plan(o: WorkloadOptions): Op[] {
  const random = prng(o.seed);
  const next = zipfSampler(o.keys, o.zipf, random);
  // Ranks map to ids through a fixed shuffle, so hot rows are spread over categories.
  const ids = Array.from({ length: o.keys }, (_, i) => i + 1);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j] as number, ids[i] as number];
  }
  const vias = ["version", "tag", "write-through"] as const;
  const ops: Op[] = [];
  for (let i = 0; i < o.ops; i++) {
    const id = ids[next()] as number;
    if (random() < o.writeShare) {
      ops.push({ kind: "write", id, via: vias[Math.floor(random() * vias.length)] ?? "version" });
    } else {
      ops.push({ kind: "read", id, flavor: random() < 0.8 ? "detail" : "slug" });
    }
  }
  return ops;
}

const TTL = 600_000;
const categoryTag = (row: Row) => `category:${row.category}`;

/**
 * Runs the workload against engines built by `makeCache` (one per lane). The loader reads the
 * in-memory "database" after a 1 ms pause, so loads overlap writes as real ones do.
 *
 * @example
 * const result = await runWorkload((onError) => new EdgeCache({ redis, prefix: "ev", onError }), {
 *   keys: 2000, ops: 20000, zipf: 1, writeShare: 0.02, concurrency: 8, seed: 1,
 *   payloadBytes: 400, categories: 50,
 * });
 * assert(result.staleReads === 0);
 */
export async function runWorkload(
  makeCache: (onError: (err: unknown) => void) => EdgeCache,
  o: WorkloadOptions,
): Promise<WorkloadResult> {
  const ops = plan(o);
  const pad = "x".repeat(o.payloadBytes);
  const db = new Map<number, Row>();
  for (let id = 1; id <= o.keys; id++) {
    db.set(id, { id, version: 1, category: id % o.categories, pad });
  }
  const acknowledged = new Map<number, number>();
  const byStatus: Record<string, number> = {};
  let loads = 0;
  let reads = 0;
  let writes = 0;
  let staleReads = 0;
  let writeErrors = 0;
  let engineErrors = 0;
  const staleExamples: string[] = [];
  const onError = () => {
    engineErrors++;
  };

  const truth = (id: number) => db.get(id) as Row;
  const load = async (id: number, counted: boolean): Promise<Row> => {
    if (counted) loads++;
    await new Promise((resolve) => setTimeout(resolve, 1));
    return { ...truth(id) };
  };

  async function read(
    cache: EdgeCache,
    id: number,
    flavor: "detail" | "slug",
    counted: boolean,
  ): Promise<void> {
    const floor = acknowledged.get(id) ?? 1;
    const row = truth(id);
    const result =
      flavor === "detail"
        ? // Like the app's product detail: version key of the same name, tags known after load.
          await cache.getOrLoad(`product:${id}`, () => load(id, counted), {
            ttl: TTL,
            versionKey: `product:${id}`,
            versionOf: (r) => r.version,
            tagsOf: (r) => [categoryTag(r)],
          })
        : // A second key guarded by the same version under another name, tags known before.
          await cache.getOrLoad(`product-slug:p${id}`, () => load(id, counted), {
            ttl: TTL,
            versionKey: `product:${id}`,
            versionOf: (r) => r.version,
            tags: [categoryTag(row)],
          });
    if (counted) {
      reads++;
      byStatus[result.status] = (byStatus[result.status] ?? 0) + 1;
    }
    if (result.value.version < floor) {
      staleReads++;
      if (staleExamples.length < 10) {
        staleExamples.push(
          `${flavor} ${id}: got v${result.value.version} (${result.status}) after v${floor} was acknowledged`,
        );
      }
    }
  }

  async function write(cache: EdgeCache, id: number, via: WriteVia): Promise<void> {
    const row = truth(id);
    const next: Row = { ...row, version: row.version + 1 };
    db.set(id, next); // the commit
    writes++;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (via === "version") await cache.bumpVersion("product", id, next.version);
        else if (via === "tag") await cache.invalidateTags(categoryTag(next));
        else {
          await cache.writeThrough(`product:${id}`, next, next.version, {
            ttl: TTL,
            tags: [categoryTag(next)],
          });
        }
        if ((acknowledged.get(id) ?? 1) < next.version) acknowledged.set(id, next.version);
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    writeErrors++;
  }

  let cursor = 0;
  const every = o.progressEvery ?? 500;
  const lane = async () => {
    const cache = makeCache(onError);
    for (;;) {
      const i = cursor++;
      const op = ops[i];
      if (!op) return;
      if (op.kind === "read") await read(cache, op.id, op.flavor, i >= (o.warmup ?? 0));
      else await write(cache, op.id, op.via);
      if ((i + 1) % every === 0) o.onProgress?.(i + 1, ops.length);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, lane));
  const served = (byStatus.HIT ?? 0) + (byStatus.STALE ?? 0);
  return {
    reads,
    writes,
    hitRatio: reads ? served / reads : 0,
    byStatus,
    loads,
    staleReads,
    staleExamples,
    writeErrors,
    engineErrors,
  };
}
