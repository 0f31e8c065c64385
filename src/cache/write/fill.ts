import { lateTags } from "../options";
import type { ReadTarget } from "../read/hit";
import { exactCv } from "../read/reply";
import { decodeJson, runScript } from "../redis";
import { fillScript, releaseScript } from "../scripts";
import type { EntryOptions } from "../types";

/** What fill.lua answers: stored, or refused and why (lease, version, tag, expired). */
export interface FillReply {
  ok: boolean;
  r?: "lease" | "version" | "tag" | "expired";
  /** The fill's identity (`EntryWrite.id`), set by storeEntry when the entry was stored. */
  id?: string;
  /**
   * A refused fill that took the lease again (`EntryWrite.regrant`): the new lease value, the
   * own tags' counters it captured, the version key's value, and Redis's time, as an acquire's
   * grant answers them (read/reply.ts).
   */
  tok?: string;
  tg?: string[];
  cv?: number;
  now?: number;
}

/** One entry to store, as fill.lua takes it (windows in ms, already jittered). */
export interface EntryWrite {
  /** The lease token of a fill; "" for a write-through (which revokes any lease). */
  token: string;
  /** The value's JSON. */
  json: string;
  version: number | null;
  versionKey?: string;
  freshMs: number;
  graceMs: number;
  expiresAtMs?: number;
  failSafeMs: number;
  /**
   * Per tag, what the counter must be: a captured counter, `@<ms>` (not bumped since that Redis
   * time) or "" (take it as it is). See fill.lua.
   */
  tags: ReadonlyArray<readonly [name: string, seen: string]>;
  loadMs: number;
  /**
   * Unique per fill (`newToken()`): replies carrying the entry carry it, so a late reader's
   * check can tell that a value is the one it found valid (read/checks.ts).
   */
  id: string;
  /**
   * When a refused fill should take the lease again for a reload (readers are waiting on it):
   * the lease's TTL, and how many of `tags` (from the front) are the caller's own.
   */
  regrant?: { leaseTtl: number; ownTags: number };
}

/**
 * Compare-and-set of an entry (`fill.lua`, `allow-key-locking`, every key declared): a fill
 * lands only while its lease holds, never below the newest known version, never with a tag
 * snapshot a bump has overtaken. One request.
 *
 * @example
 *   const { ok, r } = await storeEntry(target, "product:1", {
 *     token: "", json: JSON.stringify(row), version: row.version, versionKey: "product:1",
 *     freshMs: 60_000, graceMs: 0, failSafeMs: 0, tags: [["products", ""]], loadMs: 0,
 *     id: newToken(),
 *   });
 */
export async function storeEntry(t: ReadTarget, key: string, w: EntryWrite): Promise<FillReply> {
  const keys = [t.keys.entry(key), t.keys.lease(key), t.keys.tagClock];
  if (w.versionKey) keys.push(t.keys.version(w.versionKey));
  for (const [name] of w.tags) keys.push(t.keys.tag(name));
  const args = [
    w.token,
    w.json,
    w.version === null ? "" : w.version,
    w.freshMs,
    w.graceMs,
    w.expiresAtMs ?? "",
    w.failSafeMs,
    JSON.stringify(w.tags.map(([name]) => name)),
    JSON.stringify(w.tags.map(([, seen]) => seen)),
    Math.round(w.loadMs),
    w.versionKey ? "1" : "0",
    w.id,
    w.regrant ? w.regrant.leaseTtl : "",
    w.regrant ? w.regrant.ownTags : 0,
  ];
  const reply = exactCv(decodeJson<FillReply>(await runScript(t.redis, fillScript, keys, args)));
  return reply.ok ? { ...reply, id: w.id } : reply;
}

/** Gives a lease back early (the loader failed or its value is not cached), if still ours. */
export async function releaseLease(t: ReadTarget, key: string, token: string): Promise<void> {
  await runScript(t.redis, releaseScript, [t.keys.lease(key)], [token]);
}

/**
 * The tag snapshot a write stores, in fill.lua's order: the caller's own tags (`ownSeen(i)`
 * for the i-th), then the tags known only from the value (`tagsOf`) that are not among them,
 * each with `lateSeen`.
 *
 * @example
 *   snapshotTags(row, { tagList: ["products"], tagsOf: (p) => [`category:${p.categoryId}`] },
 *     () => "", "");
 *   // [["products", ""], ["category:3", ""]]
 */
export function snapshotTags<T>(
  value: T,
  opts: EntryOptions<T> & { tagList: readonly string[] },
  ownSeen: (index: number) => string,
  lateSeen: string,
): Array<[string, string]> {
  const tags: Array<[string, string]> = opts.tagList.map((tag, i) => [tag, ownSeen(i)]);
  for (const tag of lateTags(value, opts)) {
    if (!opts.tagList.includes(tag) && !tags.some(([name]) => name === tag)) {
      tags.push([tag, lateSeen]);
    }
  }
  return tags;
}
