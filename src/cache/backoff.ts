import { BoundedMap } from "./bounded-map";

/**
 * Loader backoff: after a loader fails for a key, the next callers within `ms` do not call it
 * again. They get the same error at once, which the engine's fail-safe handling turns into the
 * kept value where there is one (STALE, `failSafe: true`); the first caller after the interval
 * tries the source again. This is bentocache's grace-period backoff / FusionCache's fail-safe
 * throttle: a database that is down or timing out is not hammered by every request (each of
 * which would also wait out a connect deadline).
 *
 * State is per isolate (module scope), keyed by prefix + key, and bounded: the oldest record
 * goes first when more than `MAX_KEYS` keys are backing off. Isolates do not share it, so a
 * fleet of N isolates tries the source at most N times per interval.
 */

/** Most keys remembered per isolate; a failing source rarely has more hot keys than this. */
export const MAX_KEYS = 1000;

interface Failure {
  until: number;
  error: unknown;
}

const failures = new BoundedMap<string, Failure>(MAX_KEYS);

/**
 * Thrown (with the original error as `cause`) to callers inside a backoff interval.
 *
 * @example
 * ```ts
 * try {
 *   return await cache.getOrLoad(key, load, { loaderBackoff: 2_000 });
 * } catch (error) {
 *   if (!(error instanceof LoaderBackoffError)) throw error;
 *   const retryAfter = String(Math.ceil(error.retryInMs / 1000));
 *   return Response.json({ error: { code: "unavailable", message: error.message } }, {
 *     status: 503,
 *     headers: { "Retry-After": retryAfter },
 *   });
 * }
 * ```
 */
export class LoaderBackoffError extends Error {
  constructor(
    readonly key: string,
    readonly retryInMs: number,
    cause: unknown,
  ) {
    super(`loader for ${key} failed recently; retrying in ${retryInMs} ms`, { cause });
    this.name = "LoaderBackoffError";
  }
}

/**
 * `loader` wrapped so that a failure backs the key off for `ms`.
 *
 * @example
 * const load = withBackoff("ec", "product:42", () => loadProduct(42), 2000);
 * await load(); // throws (Postgres down) -> remembered
 * await load(); // within 2 s: throws LoaderBackoffError without calling loadProduct
 */
export function withBackoff<T>(
  prefix: string,
  key: string,
  loader: () => Promise<T>,
  ms: number,
  now: () => number = Date.now,
): () => Promise<T> {
  const id = `${prefix}\u0000${key}`;
  return async () => {
    const failed = failures.get(id);
    if (failed) {
      const left = failed.until - now();
      if (left > 0) throw new LoaderBackoffError(key, left, failed.error);
      failures.delete(id);
    }
    try {
      return await loader();
    } catch (error) {
      failures.touch(id, { until: now() + ms, error }); // Map order is the eviction order
      throw error;
    }
  };
}

/** Whether `key` of `prefix` is inside a backoff interval now (for tests and admin). */
export function backingOff(prefix: string, key: string, now = Date.now()): boolean {
  const failed = failures.get(`${prefix}\u0000${key}`);
  return failed !== undefined && failed.until > now;
}

/** Number of keys remembered (bounded by MAX_KEYS). */
export function backoffSize(): number {
  return failures.size;
}
