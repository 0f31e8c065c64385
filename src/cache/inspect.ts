import type { KeySpace } from "./keys";
import { decodeJson, runScript, type ScriptClient } from "./redis";
import { freshnessScript, inspectScript } from "./scripts";
import type { Inspection } from "./types";

/**
 * Everything Redis knows about one key, in one request (`inspect.lua`): the raw entry decoded,
 * its state on the Redis clock, the PTTLs of the entry and the lease, the current version and
 * the current counters of the entry's stored tags. Read-only (`no-writes`, every key declared:
 * a second request when the entry has tags not in `knownTags`); for admin and tests
 * (`EdgeCache.inspect`).
 *
 * @example
 *   const info = await inspectEntry(redis, keySpace("ec"), "product:42", "product:42");
 *   info.state; // "fresh" | "stale" | "fail-safe" | "absent"
 */
export async function inspectEntry(
  redis: ScriptClient,
  keys: KeySpace,
  key: string,
  versionKey?: string,
  /** Tags the entry is believed to have: declared up front (an unknown one costs a retry). */
  knownTags: readonly string[] = [],
): Promise<Inspection> {
  type Reply = {
    now: number;
    pttl: number;
    leasePttl: number;
    entry?: Record<string, string>;
    version?: string | false;
    tags?: Record<string, string | false>;
    need?: string[];
  };
  const ask = async (tags: readonly string[]) => {
    const redisKeys = [keys.entry(key), keys.lease(key)];
    if (versionKey) redisKeys.push(keys.version(versionKey));
    for (const tag of tags) redisKeys.push(keys.tag(tag));
    const args = [versionKey ? "1" : "0", JSON.stringify(tags)];
    return decodeJson<Reply>(await runScript(redis, inspectScript, redisKeys, args));
  };
  let reply = await ask(knownTags);
  // The entry has tags not declared (every key the script reads must be in KEYS): ask again
  // with its list; if it changed in between once more, the next call will see it.
  if (reply.need) reply = await ask(reply.need);
  const e = reply.entry;
  const entry = e
    ? {
        value: JSON.parse(e.v ?? "null") as unknown,
        version: e.ver ? Number(e.ver) : null,
        createdAt: Number(e.ct),
        fillId: e.id || null,
        freshUntil: Number(e.fu),
        staleUntil: Number(e.su),
        keepUntil: Number(e.xu),
        loadTimeMs: Number(e.lt),
        tags: e.tg ? (JSON.parse(e.tg) as Record<string, string>) : {},
      }
    : null;
  const state = !entry
    ? "absent"
    : reply.now < entry.freshUntil
      ? "fresh"
      : reply.now < entry.staleUntil
        ? "stale"
        : "fail-safe";
  return {
    key,
    now: reply.now,
    entry,
    state,
    pttl: reply.pttl,
    leasePttl: reply.leasePttl,
    version: reply.version ? Number(reply.version) : null,
    currentTags: Object.fromEntries(
      Object.entries(reply.tags ?? {}).map(([k, v]) => [k, v === false ? null : v]),
    ),
  };
}

/**
 * Milliseconds each key stays fresh (negative once stale, null when absent) and the Redis
 * clock, in ONE request for any number of keys (none for an empty list). Reads only `fu`:
 * no tag or version check (`EdgeCache.freshness`, the warmer).
 *
 * @example
 *   const { now, fresh } = await readFreshness(redis, keySpace("ec"), ["product:1"]);
 *   fresh.get("product:1"); // e.g. 41_250, -3_000 (stale), or null (absent)
 */
export async function readFreshness(
  redis: ScriptClient,
  keys: KeySpace,
  list: readonly string[],
): Promise<{ now: number; fresh: Map<string, number | null> }> {
  if (list.length === 0) return { now: Date.now(), fresh: new Map() };
  const raw = decodeJson<{ now: number; f: Array<number | false> | Record<string, never> }>(
    await runScript(
      redis,
      freshnessScript,
      list.map((k) => keys.entry(k)),
      [],
    ),
  );
  // An empty Lua table encodes as {} rather than [].
  const f = Array.isArray(raw.f) ? raw.f : [];
  return {
    now: raw.now,
    fresh: new Map(list.map((k, i) => [k, typeof f[i] === "number" ? f[i] : null])),
  };
}
