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
  readonly readYourWritesSyncToken?: string;
}

const isNoScript = (err: unknown) => err instanceof Error && /NOSCRIPT/i.test(err.message);

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
    if (!isNoScript(err)) throw err;
    if (readOnly && redis.evalshaRo && redis.evalRo) return redis.evalRo(script.source, keys, args);
    return redis.eval(script.source, keys, args);
  }
}

/**
 * Scripts answer with cjson.encode(...). The Upstash client JSON-parses string results when
 * automaticDeserialization is on (its default) and leaves them as strings when it is off.
 */
export function decodeJson<T>(reply: unknown): T {
  return (typeof reply === "string" ? JSON.parse(reply) : reply) as T;
}
