import type { KeySpace } from "../keys";
import { decodeJson, runScript, type ScriptClient } from "../redis";
import { hitScript } from "../scripts";
import type { CheckSpec } from "./checks";
import type { ReadReply } from "./reply";

/** Where reads go: the client and the key layout. */
export interface ReadTarget {
  redis: ScriptClient;
  keys: KeySpace;
}

/**
 * The read-only first look of a read (`hit.lua`, flagged `no-writes,allow-key-locking`): one
 * request that writes nothing, with every key it reads in KEYS (entry, lease, version key,
 * the counters of `tags`). `replica` sends it as `EVALSHA_RO`, which a read replica of an
 * Upstash Global database may serve; otherwise as `EVALSHA` of the same read-only script,
 * which the primary serves. An entry with a tag not in `tags` answers `r: "need"` and every tag
 * name it has: declare them and ask again (see known.ts).
 *
 * @example
 *   const reply = await readHit({ redis, keys: keySpace("ec") }, "product:1", {
 *     versionKey: "product:1", tags: ["products", "category:3"], replica: false,
 *   });
 *   reply.s; // "HIT" | "STALE" | "MISS"
 */
export async function readHit(t: ReadTarget, key: string, what: HitRead): Promise<ReadReply> {
  const keys = [t.keys.entry(key), t.keys.lease(key)];
  if (what.versionKey) keys.push(t.keys.version(what.versionKey));
  for (const tag of what.tags) keys.push(t.keys.tag(tag));
  const args = [what.versionKey ? "1" : "0", namesJson(what.tags), String(what.own ?? 0)];
  if (what.checks?.length) {
    // Other entries' checks (read/checks.ts): their keys after the read's own, declared alike.
    args.push(String(keys.length));
    const specs: unknown[] = [];
    for (const check of what.checks) {
      const { lease } = check;
      // A lease check reads the lease instead of the entry, and only the own tags' counters.
      keys.push(lease ? t.keys.lease(check.key) : t.keys.entry(check.key));
      if (check.versionKey) keys.push(t.keys.version(check.versionKey));
      const tags = lease ? lease.tags : check.tags;
      for (const tag of tags) keys.push(t.keys.tag(tag));
      const hasVersion = check.versionKey ? 1 : 0;
      specs.push(
        lease
          ? [hasVersion, tags, lease.tok, lease.cv ?? 0, lease.tg]
          : [hasVersion, tags, check.own ?? 0],
      );
    }
    args.push(JSON.stringify(specs));
  }
  return decodeJson<ReadReply>(await runScript(t.redis, hitScript, keys, args, what.replica));
}

/** A list of names as the scripts' JSON argument ("[]" for none, most reads, without stringify). */
export function namesJson(names: readonly string[]): string {
  return names.length === 0 ? "[]" : JSON.stringify(names);
}

/** What a hit read declares: the version key, the tags, where it goes, and checks it carries. */
export interface HitRead {
  versionKey?: string;
  tags: readonly string[];
  /**
   * How many of `tags` (from the front) are the caller's own: an entry filled without one of
   * them is not served (a bump of that tag could not reach it), whatever it was filled with.
   * Default 0: every declared tag was learned from the entry (tests reading it raw).
   */
  own?: number;
  replica: boolean;
  /** Checks of other entries to answer in `ck` (read/checks.ts); strict reads only. */
  checks?: readonly CheckSpec[];
}
