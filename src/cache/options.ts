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
 * Merges `options` over `defaults` (an option left undefined takes the default) and validates
 * every name (InvalidKeyError before any request).
 *
 * Built as one object literal of a fixed shape: this runs on every read, and a spread of three
 * objects plus properties added afterwards made V8 give the result a slow dictionary shape. It
 * was about a third of the engine's own CPU per hit (bench/results/profile-notes.md).
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
  const d = defaults as EntryOptions<T>;
  const early = options.earlyRefresh ?? d.earlyRefresh ?? true;
  const failSafe = options.failSafe ?? d.failSafe ?? false;
  const tags = options.tags ?? d.tags;
  const versionKey = options.versionKey ?? d.versionKey;
  if (versionKey) assertName("version key", versionKey);
  const expiresAt = options.expiresAt ?? d.expiresAt;
  const consistency = options.consistency ?? d.consistency;
  return {
    ttl: options.ttl ?? d.ttl ?? DEFAULTS.ttl,
    staleTtl: options.staleTtl ?? d.staleTtl ?? DEFAULTS.staleTtl,
    expiresAt,
    tags,
    tagsOf: options.tagsOf ?? d.tagsOf,
    tagsAsOf: options.tagsAsOf ?? d.tagsAsOf,
    versionKey,
    versionOf: options.versionOf ?? d.versionOf,
    jitter: options.jitter ?? d.jitter ?? DEFAULTS.jitter,
    earlyRefresh: early,
    waitUntil: options.waitUntil ?? d.waitUntil,
    leaseTtl: options.leaseTtl ?? d.leaseTtl ?? DEFAULTS.leaseTtl,
    waitBudget: options.waitBudget ?? d.waitBudget ?? DEFAULTS.waitBudget,
    failSafe,
    negativeTtl: options.negativeTtl ?? d.negativeTtl,
    cacheIf: options.cacheIf ?? d.cacheIf,
    loaderBackoff: options.loaderBackoff ?? d.loaderBackoff,
    consistency,
    tagList:
      !tags || tags.length === 0
        ? NO_TAGS
        : (tags.length === 1 ? tags : [...new Set(tags)]).map((t) => assertName("tag", t)),
    beta: early === false ? 0 : early === true ? 1 : early.beta,
    failSafeMs: failSafe === false ? 0 : failSafe === true ? FAIL_SAFE_DEFAULT_MS : failSafe,
    expiresAtMs: expiresAt instanceof Date ? expiresAt.getTime() : expiresAt,
    replica: consistency === "replica",
  };
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
