import { createHash } from "node:crypto";

/**
 * Lua script flags that Upstash accepts and Redis does not.
 *
 * `allow-key-locking` tells Upstash to lock only the keys a script declares instead of the whole
 * database; @upstash/ratelimit (2.1 and later) starts every script with
 * `#!lua flags=allow-key-locking`. Redis 7 refuses the script ("Unexpected flag in script
 * shebang"), so the gateway drops the flag before EVAL, which changes nothing else about how
 * the script runs on one Redis.
 *
 * Dropping it changes the script's SHA-1, so the gateway remembers which hash the client knows
 * the script by and sends EVALSHA of that hash to the stored script: after the first EVAL a
 * call costs one request, as on Upstash. A gateway restart forgets the aliases; the client's
 * next EVALSHA then gets NOSCRIPT and falls back to EVAL, which teaches the alias again.
 * (SCRIPT LOAD / SCRIPT EXISTS are passed through untranslated; Redis refuses such a script.)
 */
export const UPSTASH_ONLY_FLAGS: ReadonlySet<string> = new Set(["allow-key-locking"]);

const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");

/**
 * The script without the Upstash-only flags, or the same string when it has none.
 *
 * @example
 * withoutUpstashFlags("#!lua flags=allow-key-locking\nreturn 1"); // "#!lua\nreturn 1"
 * withoutUpstashFlags("#!lua flags=no-writes,allow-key-locking\nreturn 1");
 * // "#!lua flags=no-writes\nreturn 1"
 */
export function withoutUpstashFlags(script: string): string {
  const end = script.indexOf("\n");
  const first = end === -1 ? script : script.slice(0, end);
  const m = /^#!lua(\s+)flags=(\S*)(.*)$/.exec(first);
  if (!m) return script;
  const flags = (m[2] ?? "").split(",").filter((f) => f !== "");
  const kept = flags.filter((f) => !UPSTASH_ONLY_FLAGS.has(f));
  if (kept.length === flags.length) return script;
  const shebang = kept.length > 0 ? `#!lua${m[1]}flags=${kept.join(",")}${m[3]}` : `#!lua${m[3]}`;
  return end === -1 ? shebang : shebang + script.slice(end);
}

type Command = [name: string, ...args: string[]];

/** Per gateway: client SHA-1 -> SHA-1 of the script Redis actually has. */
export class ScriptAliases {
  private readonly aliases = new Map<string, string>();

  /** The command to send to Redis in place of `command`. */
  translate(command: Command): Command {
    const [name, first, ...rest] = command;
    if (first === undefined) return command;
    if (name === "EVAL" || name === "EVAL_RO") {
      const local = withoutUpstashFlags(first);
      if (local === first) return command;
      this.aliases.set(sha1(first), sha1(local));
      return [name, local, ...rest];
    }
    if (name === "EVALSHA" || name === "EVALSHA_RO") {
      const alias = this.aliases.get(first.toLowerCase());
      return alias ? [name, alias, ...rest] : command;
    }
    return command;
  }
}
