/**
 * A write or invalidation could not reach Redis: fall back to the outbox / queue.
 * `operation` names the call, `cause` is the Redis client's error.
 *
 * @example
 * ```ts
 * try {
 *   await cache.apply({ keys: [`product:${id}`], versions: { [`product:${id}`]: version } });
 * } catch (error) {
 *   if (!(error instanceof CacheWriteError)) throw error;
 *   await queue.send({ keys: [`product:${id}`] }); // apply it later
 * }
 * ```
 */
export class CacheWriteError extends Error {
  constructor(
    readonly operation: string,
    override readonly cause: unknown,
  ) {
    super(`cache ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "CacheWriteError";
  }
}
