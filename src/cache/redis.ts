import type { LuaScript } from "./scripts";

/**
 * The only Redis surface the engine needs. `@upstash/redis`'s client satisfies it as is;
 * every engine operation is one EVALSHA (or EVAL on the first call after a script flush).
 * `evalshaRo`/`evalRo` carry the read-only hit of `consistency: "replica"` entries, which a
 * read replica of an Upstash Global database may serve; a client without them sends those
 * hits as plain `EVALSHA` (to the primary), which is always correct.
 */
export interface ScriptClient {
  evalsha(sha1: string, keys: string[], args: unknown[]): Promise<unknown>;
  eval(script: string, keys: string[], args: unknown[]): Promise<unknown>;
  evalshaRo?(sha1: string, keys: string[], args: unknown[]): Promise<unknown>;
  evalRo?(script: string, keys: string[], args: unknown[]): Promise<unknown>;
  /**
   * The client's read-your-writes position (`@upstash/redis` keeps it per instance). Replica
   * reads share an in-isolate load only with requests at the same position; a wrapper around
   * the client should pass it through.
   */
  readonly readYourWritesSyncToken?: string | undefined;
}

const isNoScript = (err: unknown) => err instanceof Error && /NOSCRIPT/i.test(err.message);

/**
 * Whether Redis (or the REST API in front of it) answered `err`, rather than the request
 * failing on its way (a timeout, an abort, a network error: `fetch` rejects with a TypeError).
 * After an answer, Redis is there: a follow-up request (a lease release) has a chance.
 */
export function isErrorReply(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof TypeError) return false;
  return err.name !== "AbortError" && err.name !== "TimeoutError";
}

/**
 * EVALSHA with the precomputed hash; EVAL (which also caches the script) on NOSCRIPT. With
 * `readOnly`, the `_RO` forms (replica-servable): the script must be flagged `no-writes`.
 */
export async function runScript(
  redis: ScriptClient,
  script: LuaScript,
  keys: string[],
  args: (string | number)[],
  readOnly = false,
): Promise<unknown> {
  try {
    if (readOnly && redis.evalshaRo && redis.evalRo) {
      return await redis.evalshaRo(script.sha1, keys, args);
    }
    return await redis.evalsha(script.sha1, keys, args);
  } catch (err) {
    if (!isNoScript(err)) throw withoutArguments(err, script, keys);
    try {
      if (readOnly && redis.evalshaRo && redis.evalRo) {
        return await redis.evalRo(script.source, keys, args);
      }
      return await redis.eval(script.source, keys, args);
    } catch (again) {
      throw withoutArguments(again, script, keys);
    }
  }
}

/** Where @upstash/redis's error messages start quoting the whole command (the app cuts it too). */
export const COMMAND_WAS = ", command was: ";

/**
 * `err` with the command's arguments cut from its message (and stack). `@upstash/redis`
 * quotes the whole command in an error reply's message (`…, command was: [...]`), and a
 * fill's or write-through's arguments hold the cached value: an 11 MB value refused by
 * Redis made an 11 MB message that `onError`, `CacheWriteError` and every logger carried on,
 * and with it whatever the value held (personal data) into the logs. The script and its KEYS
 * stay (what an operator needs); the error keeps its class, so `instanceof` still works.
 */
function withoutArguments(err: unknown, script: LuaScript, keys: string[]): unknown {
  if (!(err instanceof Error)) return err;
  const at = err.message.indexOf(COMMAND_WAS);
  if (at < 0) return err;
  const original = err.message;
  err.message = `${original.slice(0, at)}${COMMAND_WAS}EVALSHA ${script.sha1} (${script.name}.lua) KEYS ${JSON.stringify(keys)} (arguments not shown: they can hold cached values)`;
  if (typeof err.stack === "string") err.stack = err.stack.replace(original, err.message);
  return err;
}

/**
 * Scripts answer with cjson.encode(...). The Upstash client JSON-parses string results when
 * automaticDeserialization is on (its default) and leaves them as strings when it is off.
 */
export function decodeJson<T>(reply: unknown): T {
  return (typeof reply === "string" ? JSON.parse(reply) : reply) as T;
}
