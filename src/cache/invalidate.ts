import type { KeySpace } from "./keys";
import { runScript, type ScriptClient } from "./redis";
import {
  applyScript,
  bumpTagsScript,
  bumpVersionScript,
  invalidateScript,
  purgeScript,
} from "./scripts";
import type { PurgeStep } from "./types";

/**
 * The invalidation requests of `EdgeCache` (`invalidate`, `apply`, `invalidateTags`,
 * `bumpVersion`, `purgePattern`): ONE script call each, counted by the script in `statsKey`
 * (the calling isolate's stats shard). The engine keeps what is not Redis: its L1 and the
 * `CacheWriteError` wrapping. Each function builds its key names (which validates them) before
 * it returns, so an invalid name throws `InvalidKeyError` synchronously, never as a rejection
 * the engine would wrap; a Redis fault rejects the returned promise.
 *
 * @example
 *   const target = { redis, keys: keySpace("ec"), statsKey: keySpace("ec").stats(0) };
 *   await unlinkKeys(target, ["product:42"]); // 1 (entries removed)
 */
export interface Target {
  redis: ScriptClient;
  keys: KeySpace;
  statsKey: string;
}

/** UNLINKs each entry and its lease; the number of entries that existed. Callers skip []. */
export function unlinkKeys(t: Target, list: readonly string[]): Promise<number> {
  const redisKeys = list.flatMap((k) => [t.keys.entry(k), t.keys.lease(k)]);
  return runScript(t.redis, invalidateScript, [...redisKeys, t.statsKey], []).then(Number);
}

/** One invalidation event (`apply.lua`), lists already deduplicated and not all empty. */
export function applyChange(
  t: Target,
  keys: readonly string[],
  tags: readonly string[],
  versions: ReadonlyArray<readonly [string, number]>,
): Promise<{ removed: number; tagsBumped: number; versionsAdvanced: number }> {
  const redisKeys = [
    t.statsKey,
    t.keys.tagClock,
    ...keys.flatMap((k) => [t.keys.entry(k), t.keys.lease(k)]),
    ...tags.map((tag) => t.keys.tag(tag)),
    ...versions.flatMap(([name]) => [t.keys.version(name), t.keys.lease(name)]),
  ];
  const args = [keys.length, tags.length, versions.length, ...versions.map(([, v]) => v)];
  return runScript(t.redis, applyScript, redisKeys, args).then((raw) => {
    const reply = raw as unknown[];
    return {
      removed: Number(reply[0]),
      tagsBumped: Number(reply[1]),
      versionsAdvanced: Number(reply[2]),
    };
  });
}

/** Bumps each tag counter (`bump-tags.lua`); the new counters by tag. Callers skip []. */
export function bumpTags(t: Target, tags: readonly string[]): Promise<Record<string, string>> {
  const keys = tags.map((tag) => t.keys.tag(tag));
  return runScript(t.redis, bumpTagsScript, [...keys, t.keys.tagClock, t.statsKey], []).then(
    (reply) => {
      const values = (reply as unknown[]).map(String);
      return Object.fromEntries(tags.map((tag, i) => [tag, values[i] ?? ""]));
    },
  );
}

/** Max-advances the version `name` and UNLINKs the same-named lease (`bump-version.lua`). */
export function advanceVersion(
  t: Target,
  name: string,
  version: number,
): Promise<{ previous: number | null; current: number }> {
  const keys = [t.keys.version(name), t.statsKey, t.keys.lease(name)];
  return runScript(t.redis, bumpVersionScript, keys, [version]).then((raw) => {
    const reply = raw as unknown[];
    const previous = reply[0] === "" || reply[0] === null ? null : Number(reply[0]);
    return { previous, current: Number(reply[1]) };
  });
}

/** One bounded SCAN + UNLINK step over `{p}:[el]:{glob}` (`purge.lua`); `glob` already checked. */
export async function purgeStep(
  t: Target,
  glob: string,
  options: { cursor?: string; budget?: number; count?: number },
): Promise<PurgeStep> {
  const budget = options.budget ?? 1000;
  const count = Math.min(options.count ?? 250, budget);
  const reply = (await runScript(
    t.redis,
    purgeScript,
    [t.statsKey],
    [t.keys.prefix, glob, options.cursor ?? "0", budget, count],
  )) as unknown[];
  const cursor = String(reply[0]);
  return { cursor, done: cursor === "0", deleted: Number(reply[1]), scanned: Number(reply[2]) };
}
