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
  // Untyped callers: a string here was split into one-letter tags.
  if (tags !== undefined && !Array.isArray(tags)) {
    throw new TypeError(`cache key ${key}: tags must be an array of names, got ${typeof tags}`);
  }
  const versionKey = options.versionKey ?? d.versionKey;
  if (versionKey) assertName("version key", versionKey);
  const expiresAt = options.expiresAt ?? d.expiresAt;
  const consistency = options.consistency ?? d.consistency;
  const tagsAsOf = options.tagsAsOf ?? d.tagsAsOf;
  const backoffMs = options.loaderBackoff ?? d.loaderBackoff;
  const loadTimeout = options.loadTimeout ?? d.loadTimeout;
  if (tagsAsOf !== undefined) finite("tagsAsOf", tagsAsOf);
  const negativeTtl = options.negativeTtl ?? d.negativeTtl;
  const jitter = options.jitter ?? d.jitter ?? DEFAULTS.jitter;
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be 0..1, got ${jitter}`);
  const expiresAtMs = expiresAt instanceof Date ? expiresAt.getTime() : expiresAt;
  if (expiresAtMs !== undefined) {
    finite("expiresAt", expiresAtMs);
    // Epoch seconds (Date.now() / 1000, a JWT's exp) read as ms are a date in January 1970:
    // the value was silently never cached. No real expiry is before 2001 (1e12 ms).
    if (expiresAtMs < 1e12) {
      throw new RangeError(
        `expiresAt is epoch milliseconds (or a Date); ${expiresAtMs} looks like seconds: multiply by 1000`,
      );
    }
  }
  if (consistency !== undefined && consistency !== "strict" && consistency !== "replica") {
    throw new TypeError(`consistency must be "strict" or "replica", got ${String(consistency)}`);
  }
  const waitUntil = options.waitUntil ?? d.waitUntil;
  if (waitUntil !== undefined && typeof waitUntil !== "function") {
    throw new TypeError(
      `waitUntil must be a function (ctx.waitUntil.bind(ctx)), got ${typeof waitUntil}`,
    );
  }
  const beta = early === false ? 0 : early === true ? 1 : early.beta;
  const loadTimeoutMs = loadTimeout === undefined ? undefined : ms("loadTimeout", loadTimeout, 1);
  const leaseTtl = ms("leaseTtl", options.leaseTtl ?? d.leaseTtl ?? DEFAULTS.leaseTtl, 1);
  const waitBudget = options.waitBudget ?? d.waitBudget;
  if (!(beta >= 0 && Number.isFinite(beta))) {
    throw new RangeError(`earlyRefresh.beta must be a finite number >= 0, got ${beta}`);
  }
  return {
    ttl: ms("ttl", options.ttl ?? d.ttl ?? DEFAULTS.ttl, 1),
    staleTtl: ms("staleTtl", options.staleTtl ?? d.staleTtl ?? DEFAULTS.staleTtl, 0),
    expiresAt,
    tags,
    tagsOf: options.tagsOf ?? d.tagsOf,
    tagsAsOf,
    versionKey,
    versionOf: options.versionOf ?? d.versionOf,
    jitter,
    earlyRefresh: early,
    waitUntil,
    leaseTtl,
    waitBudget:
      waitBudget === undefined
        ? // A loader allowed `loadTimeout` is waited for that long (its lease is kept alive
          // meanwhile, read/keep-alive.ts): a budget shorter than the load sent every waiter
          // to the source too, one query per request exactly when the source is slow.
          Math.max(DEFAULTS.waitBudget, (loadTimeoutMs ?? 0) + leaseTtl)
        : ms("waitBudget", waitBudget, 0),
    failSafe,
    // Zero or less turns negative caching off (documented); anything else is a lifetime.
    negativeTtl:
      negativeTtl === undefined || negativeTtl <= 0
        ? negativeTtl
        : ms("negativeTtl", negativeTtl, 1),
    cacheIf: options.cacheIf ?? d.cacheIf,
    loaderBackoff: backoffMs === undefined ? undefined : ms("loaderBackoff", backoffMs, 0),
    loadTimeout: loadTimeoutMs,
    consistency,
    tagList:
      !tags || tags.length === 0
        ? NO_TAGS
        : (tags.length === 1 ? tags : [...new Set(tags)]).map((t) => assertName("tag", t)),
    beta,
    failSafeMs:
      failSafe === false
        ? 0
        : failSafe === true
          ? FAIL_SAFE_DEFAULT_MS
          : ms("failSafe", failSafe, 0),
    expiresAtMs: expiresAtMs === undefined ? undefined : Math.floor(expiresAtMs),
    replica: consistency === "replica",
  };
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/**
 * A duration option in whole ms, at least `min`: a caller bug (NaN, Infinity, a negative or a
 * too-small value) throws here, before any request, instead of reaching a script as a Redis
 * error; a fraction is rounded (Redis takes whole milliseconds).
 */
function ms(name: string, value: number, min: number): number {
  finite(name, value);
  const whole = Math.round(value);
  if (whole < min) throw new RangeError(`${name} must be at least ${min} ms, got ${value}`);
  if (whole > MAX_MS)
    throw new RangeError(`${name} must be at most ${MAX_MS} ms (10 years), got ${value}`);
  return whole;
}

/**
 * A version as the scripts compare it: a finite number ≥ 0 (a numeric string, from JavaScript
 * callers, too). NaN, Infinity or a negative is a caller bug, thrown before any request: it
 * used to reach Redis and come back as a CacheWriteError, which means "use the outbox", and an
 * outbox event carrying it would have been retried forever.
 *
 * @example
 *   assertVersion(7); // 7
 *   assertVersion(Number.NaN); // throws TypeError
 */
export function assertVersion(version: unknown, what = "version"): number {
  const n = typeof version === "string" && version.trim() !== "" ? Number(version) : version;
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) {
    throw new TypeError(`${what} must be a finite number >= 0, got ${String(version)}`);
  }
  return n;
}

/** Ten years: longer lifetimes are a unit mistake, and Redis times must stay exact integers. */
const MAX_MS = 10 * 365 * 24 * 3_600_000;

function finite(name: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number, got ${String(value)}`);
  }
}

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
