/**
 * Redis could not serve an operation that has no fallback (sessions live only in Redis): the
 * request failed, was refused, or passed `REDIS_TIMEOUT_MS`. The HTTP layer answers it with
 * `503 redis_unavailable` + Retry-After; the cause (driver text, URLs) goes to the log only.
 * Reads through the cache engine never need this: they fall back to Postgres (BYPASS).
 */
export class RedisUnavailableError extends Error {
  constructor(
    /** What was attempted, for logs: "session create". */
    readonly operation: string,
    options?: { cause?: unknown },
  ) {
    const cause = options?.cause;
    super(
      `Redis ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      options,
    );
    this.name = "RedisUnavailableError";
  }
}

/**
 * Runs one Redis call; any failure of it (HTTP error, network error, timeout) becomes a
 * `RedisUnavailableError`. Wrap only the call itself, not the code that interprets its answer,
 * so a bug in that code stays a 500.
 *
 * @example
 * const n = await redisCall("session delete", () => redis.del(key));
 */
export async function redisCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (cause) {
    throw new RedisUnavailableError(operation, { cause });
  }
}
