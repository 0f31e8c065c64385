import type { EntryOptions } from "../cache";
import type { Db } from "../runtime/services";

/**
 * An entity the cron warmer can reload in bulk. Each domain module exports one, using the
 * same entry options as its read path so a warmed entry is indistinguishable from a filled one.
 */
export interface Warmable<T> {
  /** Entity name, for logs ("product"). */
  readonly entity: string;
  /** The id in a cache key of this entity ("product:42" -> 42), or null if not one of ours. */
  parse(key: string): number | null;
  /** Loads many rows in ONE query; the map is keyed by id. Missing ids are simply absent. */
  loadMany(db: Db, ids: readonly number[]): Promise<Map<number, T>>;
  /** Cache key of an id ("product:42"). */
  key(id: number): string;
  /** The entry options the read path uses for this value (ttl, tags, versionKey, versionOf). */
  entry(value: T): EntryOptions<T>;
}
