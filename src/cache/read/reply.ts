import type { CacheResult } from "../types";

/**
 * What hit.lua and acquire.lua answer (JSON): the entry as found, and for acquire the lease.
 * One shape for both, so the read loop treats them alike.
 */
export interface ReadReply {
  /** Redis time (ms) when the script ran. */
  now: number;
  s: "HIT" | "STALE" | "MISS";
  /**
   * Why an entry was not served: format (a later engine wrote it, lib/entry.lua FORMAT_LEVEL),
   * version, tag, need (undeclared tags), expired (fail-safe).
   */
  r?: string;
  /** With r = need: every tag name the entry carries. */
  need?: string[];
  /** A granted lease (acquire only): the opaque lease value to fill or release with. */
  tok?: string;
  /** With a granted lease: the counters of the caller's own tags, in order. */
  tg?: string[] | Record<string, never>;
  /** On a MISS: the lease's PTTL (≤ 0: nobody holds it). */
  wait?: number;
  /** Waiter: ms until the lease holder expects its load done (announced; ≤ 0 overdue). */
  eta?: number;
  /** Waiter: the load time the lease holder announced (ms). */
  est?: number;
  /**
   * The version key's value when the lease was granted (0 when absent). Sent as a string
   * (cjson keeps 14 significant digits, so a version ≥ 1e14 came back rounded): `exactCv`
   * turns it into the number.
   */
  cv?: number;
  /**
   * The entry's value, already parsed: the scripts splice the stored JSON into the reply, so
   * one JSON.parse of the reply reads it. Absent when there is none; null is a cached "not
   * found".
   */
  v?: unknown;
  ver?: string;
  fu?: number;
  su?: number;
  lt?: number;
  ct?: number;
  fs?: boolean;
  /** With a value: the fill's identity (fill.lua's `id`), unique per fill. */
  id?: string;
  /**
   * hit.lua only: per check it carried (read/checks.ts), an entry check's fill id when the
   * entry is valid, a lease check's true when the lease is as granted; else false.
   */
  ck?: Array<string | boolean>;
}

/** A HIT or STALE reply as the caller's result, ages and windows on the Redis clock. */
export function fromEntry<T>(reply: ReadReply, status: "HIT" | "STALE"): CacheResult<T> {
  const now = reply.now;
  return {
    value: (reply.v ?? null) as T,
    status,
    version: reply.ver ? Number(reply.ver) : null,
    ageMs: Math.max(0, now - (reply.ct ?? now)),
    ttlMs: Math.max(0, (reply.fu ?? now) - now),
    staleTtlMs: Math.max(0, (reply.su ?? now) - now),
  };
}

/** An expired entry kept for fail-safe (`fs`), served because the source failed: STALE + `failSafe`. */
export function failSafeResult<T>(reply: ReadReply): CacheResult<T> {
  return { ...fromEntry<T>(reply, "STALE"), failSafe: true };
}

/**
 * A reply whose `cv` came as text (lib/entry.lua's grantReply) with it as the exact number:
 * every integer version below 2^53 survives, where cjson's number encoding rounded those of 15
 * digits and more (a negative entry then raised the version key above the real version).
 *
 * @example
 *   exactCv({ s: "MISS", now: 1, cv: "1700000000000160" }).cv; // 1700000000000160
 */
export function exactCv<R extends { cv?: unknown }>(reply: R): R & { cv?: number } {
  if (reply.cv !== undefined && typeof reply.cv !== "number") reply.cv = Number(reply.cv);
  return reply as R & { cv?: number };
}
