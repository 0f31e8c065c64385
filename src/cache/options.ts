import { assertName } from "./keys";
import type { EntryOptions } from "./types";

/** A call's options merged over the engine's defaults, validated and precomputed once. */
export type Resolved<T> = Required<
  Pick<EntryOptions<T>, "ttl" | "staleTtl" | "jitter" | "leaseTtl" | "waitBudget">
> &
  EntryOptions<T> & {
    beta: number;
    failSafeMs: number;
    tagList: readonly string[];
    /** `expiresAt` as epoch ms (a Date converted once), or undefined. */
    expiresAtMs: number | undefined;
    /** The hit may be served by a read replica (`consistency: "replica"`). */
    replica: boolean;
  };

// The wait budget outlasts the lease on purpose: a waiter behind a holder that died takes the
// lease over when it expires instead of giving up and loading without filling.
export const DEFAULTS = {
  ttl: 60_000,
  staleTtl: 0,
  jitter: 0.1,
  leaseTtl: 2_000,
  waitBudget: 2_500,
};
const FAIL_SAFE_DEFAULT_MS = 3_600_000;

/**
 * Merges `options` over `defaults` and validates every name (InvalidKeyError before any
 * request).
 *
 * @example
 *   const opts = resolveOptions("product:1", { ttl: 5_000 }, { tags: ["products"] });
 *   opts.tagList; // ["products"]
 */
export function resolveOptions<T>(
  key: string,
  defaults: EntryOptions<unknown>,
  options: EntryOptions<T>,
): Resolved<T> {
  assertName("key", key);
  const merged = { ...DEFAULTS, ...(defaults as EntryOptions<T>), ...options } as Resolved<T>;
  const early = merged.earlyRefresh ?? true;
  const failSafe = merged.failSafe ?? false;
  const tags = merged.tags;
  // One allocation for the result: this runs on every read.
  merged.tagList =
    !tags || tags.length === 0
      ? NO_TAGS
      : (tags.length === 1 ? tags : [...new Set(tags)]).map((t) => assertName("tag", t));
  if (merged.versionKey) assertName("version key", merged.versionKey);
  merged.beta = early === false ? 0 : early === true ? 1 : early.beta;
  merged.failSafeMs = failSafe === false ? 0 : failSafe === true ? FAIL_SAFE_DEFAULT_MS : failSafe;
  merged.expiresAtMs =
    merged.expiresAt instanceof Date ? merged.expiresAt.getTime() : merged.expiresAt;
  merged.replica = merged.consistency === "replica";
  return merged;
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** Tags known only from the loaded value (`tagsOf`), validated like every other name. */
export function lateTags<T>(value: T, opts: EntryOptions<T>): string[] {
  if (!opts.tagsOf || value === null || value === undefined) return [];
  return opts.tagsOf(value).map((t) => assertName("tag", t));
}

/**
 * JSON has no undefined: a loader returning it is answered but not cached. A null ("not
 * found") under a version key is cached only with `negativeTtl` (as the version captured with
 * the lease, see the engine's fill); an unversioned null is cached (negative caching).
 * `cacheIf` can refuse any other value.
 */
export function cacheable<T>(value: T, opts: Resolved<T>): boolean {
  if (value === undefined) return false;
  if (value === null && opts.versionKey && !(opts.negativeTtl && opts.negativeTtl > 0)) {
    return false;
  }
  return opts.cacheIf ? opts.cacheIf(value) : true;
}
