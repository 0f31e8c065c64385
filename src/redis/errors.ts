import { COMMAND_WAS } from "../cache/redis";

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
      `Redis ${operation} failed: ${withoutCommand(cause instanceof Error ? cause.message : String(cause))}`,
      options,
    );
    this.name = "RedisUnavailableError";
  }
}

/**
 * `message` without the command @upstash/redis quotes in its errors (`…, command was: [...]`):
 * a session's SET carries its token and the client's data, a rate-limit key the client's
 * address, and the message goes to the logs. The cache engine cuts its own (src/cache/redis.ts).
 *
 * @example
 * withoutCommand('ERR x, command was: ["set","ec:s:9f…","{…}"]'); // "ERR x (command not shown)"
 */
export function withoutCommand(message: string): string {
  const at = message.indexOf(COMMAND_WAS);
  return at < 0 ? message : `${message.slice(0, at)} (command not shown)`;
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

/**
 * Upstash's errors for a database over a limit of its plan (upstash.com/docs/redis/troubleshooting):
 * the daily and monthly request limits, concurrent connections, and the storage quota. Not
 * the size limits (request, record, key), which are about what was sent.
 */
const UPSTASH_LIMIT =
  /^ERR (max daily request limit|max requests limit|max concurrent connections|DB capacity quota) exceeded/i;

/**
 * Whether Redis itself answered `error` (a command or script error, `ERR …` or `WRONGTYPE …`,
 * anywhere in its cause chain), as opposed to Redis not answering: a network failure, a
 * timeout, an HTTP 5xx or a refused token. Only the first is about the data sent; the outbox
 * drain charges a row for it and treats everything else as an outage (src/jobs/drain.ts).
 *
 * @example
 * isRedisReplyError(new Error("ERR user_script:12: WRONGTYPE …")); // true
 * isRedisReplyError(new TypeError("fetch failed")); // false
 * isRedisReplyError(new Error("ERR max daily request limit exceeded. Limit: 10000")); // false
 */
export function isRedisReplyError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current instanceof Error; depth++) {
    // Upstash's limits answer `ERR …` too, but they are about the database, not the data:
    // an outage until the quota resets or the plan changes. Read as bad rows, a day's
    // exhausted quota charged every pending row an attempt per tick and parked them all.
    if (UPSTASH_LIMIT.test(current.message)) return false;
    if (/^(ERR|WRONGTYPE)\b/.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}
