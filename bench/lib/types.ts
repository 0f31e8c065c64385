/**
 * The one interface every contender implements, and what the harness hands it. A contender is
 * one "isolate": its own Redis client and its own copy of whatever state its library keeps
 * (in-flight maps, counters). Reads and writes use the same in-memory database (db.ts) for all.
 */
import type { Redis } from "@upstash/redis";
import type { Db, Row } from "./db";

export interface GetOptions {
  /** Group names the entry belongs to (group-invalidation workload). */
  tags?: readonly string[];
}

export interface Contender {
  /** Read-through: the cached row or, on a miss, `load()` (which hits the database). */
  get(key: string, load: () => Promise<Row>, options?: GetOptions): Promise<Row>;
  /**
   * Called after the database committed `version` of `key` (`row`, as the write returned it):
   * invalidate (or write through) the way this library does. The write counts as acknowledged
   * when this resolves.
   */
  write(key: string, version: number, row: Row): Promise<void>;
  /**
   * Invalidates every entry tagged `tag`. `keys` is the application's own list of the group's
   * keys, for libraries without tags (they must delete key by key).
   */
  invalidateGroup(tag: string, keys: readonly string[]): Promise<void>;
  /** Waits for background work (fire-and-forget fills) the library started. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Everything a contender may use to build itself. */
export interface ContenderEnv {
  /**
   * A new @upstash/redis client for this contender's gateway token, the same for everyone:
   * the library's defaults but telemetry, auto-pipelining and base64 replies
   * (bench/lib/upstash.ts says why).
   */
  upstash(): Redis;
  /** redis:// URL of the latency proxy in front of the bench's redis-server (ioredis users). */
  redisProxyUrl: string;
  /** Key prefix / namespace unique to this contender run. */
  prefix: string;
  /** The database: version-checked reads query it directly. */
  db: Db;
}

export interface ContenderModule {
  /** Short id (CLI filter, results JSON). */
  id: string;
  /** Name in tables. */
  label: string;
  /** How it invalidates a group, in one line (printed under the group table). */
  groupHow: string;
  /** True when the library talks to Redis through the Upstash gateway (else: the TCP proxy). */
  viaGateway: boolean;
  create(env: ContenderEnv): Promise<Contender>;
}
