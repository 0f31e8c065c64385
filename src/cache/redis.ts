import type { LuaScript } from "./scripts";

/**
 * The only Redis surface the engine needs. `@upstash/redis`'s client satisfies it as is;
 * every engine operation is one EVALSHA (or EVAL on the first call after a script flush).
 */
export interface ScriptClient {
  evalsha(sha1: string, keys: string[], args: unknown[]): Promise<unknown>;
  eval(script: string, keys: string[], args: unknown[]): Promise<unknown>;
}

const isNoScript = (err: unknown) => err instanceof Error && /NOSCRIPT/i.test(err.message);

/** EVALSHA with the precomputed hash; EVAL (which also caches the script) on NOSCRIPT. */
export async function runScript(
  redis: ScriptClient,
  script: LuaScript,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha1, keys, args);
  } catch (err) {
    if (!isNoScript(err)) throw err;
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
