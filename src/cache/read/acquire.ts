import { decodeJson, runScript } from "../redis";
import { acquireScript } from "../scripts";
import { namesJson, type ReadTarget } from "./hit";
import { declaredTags } from "./known";
import { exactCv, type ReadReply } from "./reply";

/**
 * The writing half of a read (`acquire.lua`, `allow-key-locking`, always the primary): looks
 * at the entry again and, on a miss, a stale entry or an early refresh (`early`), tries the
 * single-flight lease. A granted lease returns the counters of the caller's own `tags` (to
 * check the fill against) and the version key's value; a waiter learns what the holder
 * announced. Creates missing tag counters (at the current time) and deletes an invalid entry.
 *
 * @example
 *   const reply = await acquire(target, "product:1", {
 *     versionKey: "product:1", tags: ["products"], learned: ["category:3"],
 *     token: "8f3a…", leaseTtl: 2_000, early: false, estimateMs: 40,
 *   });
 *   if (reply.tok) { ... load, then fill with reply.tok and reply.tg ... }
 */
export async function acquire(
  t: ReadTarget,
  key: string,
  what: {
    versionKey?: string;
    /** The caller's own tags: their counters are captured for the fill, in this order. */
    tags: readonly string[];
    /** Tags learned from the entry (tagsOf) that the caller did not name: declared too. */
    learned: readonly string[];
    token: string;
    leaseTtl: number;
    early: boolean;
    /** This isolate's guess of the load time, announced when the entry has none (wait.ts). */
    estimateMs: number;
    /**
     * Last try: an entry with tags not declared counts as a miss (the lease is taken). Without
     * it such an entry only answers `r: "need"` with its tag names, and nothing is written.
     */
    lastTry?: boolean;
  },
): Promise<ReadReply> {
  const names = declaredTags(what.tags, what.learned);
  const keys = [t.keys.entry(key), t.keys.lease(key), t.keys.tagClock];
  if (what.versionKey) keys.push(t.keys.version(what.versionKey));
  for (const tag of names) keys.push(t.keys.tag(tag));
  const args = [
    what.token,
    what.leaseTtl,
    what.early ? "1" : "0",
    Math.round(what.estimateMs),
    what.versionKey ? "1" : "0",
    namesJson(names),
    what.tags.length,
    what.lastTry ? "1" : "0",
  ];
  return exactCv(decodeJson<ReadReply>(await runScript(t.redis, acquireScript, keys, args)));
}
