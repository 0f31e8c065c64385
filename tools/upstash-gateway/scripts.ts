/**
 * Lua shebang flags the way Upstash reads them, on top of a Redis 7 that does not know all of
 * them.
 *
 * Upstash runs a script under the database's global lock unless its first line says
 * `#!lua flags=allow-key-locking`; then it locks only the keys in KEYS, and a script that
 * touches any other key is rejected (https://upstash.com/docs/redis/commands/scripting/eval,
 * https://upstash.com/docs/redis/features/key-locking). Redis 7.0 rejects that flag
 * ("Unexpected flag in script shebang"), so the gateway rewrites such a script before Redis
 * sees it:
 *
 * - the `allow-key-locking` flag is dropped and every other flag (`no-writes`, …) is kept, so
 *   Redis still enforces `no-writes` itself;
 * - in strict mode a one-line Lua prelude shadows `redis` with a table whose `call`/`pcall`
 *   first find the command's keys (from its arguments for the commands in KEY_SPECS, else by
 *   asking Redis: `COMMAND GETKEYS`) and fail the script
 *   when a key is not in KEYS. The prelude shares the body's second line, so Lua's error
 *   line numbers (`@user_script:N`) stay those of the original text, except that an error a
 *   `redis.call` raises names line 2 (Redis's error handler reports the frame that called
 *   Redis, here the prelude's wrapper; scripts have no `debug` library to do better).
 *
 * The client computes SHA-1 over the text it sent, so the gateway keeps original SHA ->
 * rewritten script and translates `EVALSHA`, `EVALSHA_RO`, `SCRIPT LOAD` and `SCRIPT EXISTS`.
 *
 * @example
 * const registry = new ScriptRegistry(true);
 * const { command, script } = registry.rewrite(["EVAL", "#!lua flags=allow-key-locking\nreturn 1", "0"]);
 * // command[1] now starts with "#!lua\n"; script.keyLocked === true
 */
import { createHash } from "node:crypto";

type Command = [name: string, ...args: string[]];

export const KEY_LOCKING_FLAG = "allow-key-locking";

/** What the gateway knows about one script text the client sent. */
export interface ScriptInfo {
  /** SHA-1 of the text the client sent: what EVALSHA names. */
  readonly sha: string;
  /** The text Redis runs (the original when nothing needed rewriting). */
  readonly translated: string;
  readonly translatedSha: string;
  /** Flagged `allow-key-locking`: Upstash locks only KEYS instead of the whole database. */
  readonly keyLocked: boolean;
  readonly noWrites: boolean;
}

/** A script command rewritten for Redis, with what it runs (undefined = not a script call). */
export interface Rewritten {
  command: Command;
  /** For EVAL*: the script. For EVALSHA* of a SHA the gateway never saw: "unknown". */
  script?: ScriptInfo | "unknown";
  /** SCRIPT LOAD answers the translated SHA; the client must get the original one. */
  mapReply?: (reply: unknown) => unknown;
}

/**
 * Commands that work on the whole database. Upstash rejects them in `allow-key-locking`
 * scripts ("commands that need database-wide access, such as FLUSHDB, are rejected"); which
 * ones exactly it does not list, so this is the gateway's conservative reading.
 */
const DATABASE_WIDE = ["FLUSHDB", "FLUSHALL", "KEYS", "SCAN", "RANDOMKEY", "DBSIZE", "SWAPDB"];

/**
 * Key positions of common commands, exactly as Redis 7's `COMMAND` reports them: argv index of
 * the first key, of the last (negative: counted from the end), and the step; 0 = no keys. None
 * has movable keys (test/node/gateway-scripts.test.ts checks every entry against the server).
 * The prelude reads a command's keys from its arguments when it is listed here, and asks
 * `COMMAND GETKEYS` otherwise: asking costs a nested Redis call per `redis.call` (about half of a
 * small script's run time), which Upstash, checking keys natively, does not pay.
 */
export const KEY_SPECS: Readonly<Record<string, readonly [number, number, number]>> = {
  GET: [1, 1, 1],
  SET: [1, 1, 1],
  GETDEL: [1, 1, 1],
  INCR: [1, 1, 1],
  INCRBY: [1, 1, 1],
  DECR: [1, 1, 1],
  DECRBY: [1, 1, 1],
  HGET: [1, 1, 1],
  HMGET: [1, 1, 1],
  HSET: [1, 1, 1],
  HDEL: [1, 1, 1],
  HGETALL: [1, 1, 1],
  HINCRBY: [1, 1, 1],
  EXPIRE: [1, 1, 1],
  PEXPIRE: [1, 1, 1],
  PEXPIREAT: [1, 1, 1],
  TTL: [1, 1, 1],
  PTTL: [1, 1, 1],
  TYPE: [1, 1, 1],
  ZADD: [1, 1, 1],
  ZINCRBY: [1, 1, 1],
  ZSCORE: [1, 1, 1],
  ZREM: [1, 1, 1],
  SADD: [1, 1, 1],
  SREM: [1, 1, 1],
  SISMEMBER: [1, 1, 1],
  LPUSH: [1, 1, 1],
  RPUSH: [1, 1, 1],
  DEL: [1, -1, 1],
  UNLINK: [1, -1, 1],
  EXISTS: [1, -1, 1],
  MGET: [1, -1, 1],
  MSET: [1, -1, 2],
  TIME: [0, 0, 0],
  PING: [0, 0, 0],
};

/**
 * The KEY_SPECS entries of the commands a script names in a string literal, as a Lua table
 * constructor. Only those: the table is built on every run of the script. A command named
 * some other way is still checked, through `COMMAND GETKEYS`.
 */
function keySpecTable(body: string): string {
  const named = new Set<string>();
  for (const [, word] of body.matchAll(/['"]([A-Za-z]+)['"]/g)) {
    const name = (word ?? "").toUpperCase();
    if (KEY_SPECS[name]) named.add(name);
  }
  const entries = [...named].map((n) => `${n}={${(KEY_SPECS[n] ?? []).join(",")}}`);
  return `{${entries.join(",")}}`;
}

/**
 * The prelude, one line (see the module comment for why). Every name is a local prefixed
 * `__gw_` so the body cannot collide with it. Strict: `__gw_bad` remembers a violation even
 * when the body swallows the error with Lua's `pcall`, and the wrapper fails the script anyway.
 * Audit (for scripts without the flag): each violation is written once to the redis-server
 * log as `gateway-key-audit <sha> <message>` and the script runs on unchanged.
 */
function prelude(mode: "strict" | "audit", sha: string, body: string): string {
  const fail =
    mode === "strict"
      ? "local function __gw_fail(msg) __gw_bad = msg error({ err = msg }) end"
      : `local __gw_seen = {} local function __gw_fail(msg) if not __gw_seen[msg] then __gw_seen[msg] = true __gw_r.log(__gw_r.LOG_WARNING, 'gateway-key-audit ${sha} ' .. msg) end end`;
  const wide = DATABASE_WIDE.map((c) => `${c}=true`).join(",");
  return [
    "local __gw_r = redis",
    "local __gw_keys = {}",
    "for _, k in ipairs(KEYS) do __gw_keys[k] = true end",
    "local __gw_bad = nil",
    `local __gw_wide = {${wide}}`,
    `local __gw_spec = ${keySpecTable(body)}`,
    fail,
    "local function __gw_key(k)",
    '  if not __gw_keys[k] then __gw_fail("ERR script touched undeclared key \'" .. k .. "\' (allow-key-locking requires every key in KEYS)") end',
    "end",
    "local function __gw_check(...)",
    " local name = string.upper(tostring((...)))",
    " if __gw_wide[name] then __gw_fail('ERR script ran ' .. name .. ', a database-wide command (allow-key-locking scripts may touch only the keys in KEYS)') end",
    " local spec = __gw_spec[name]",
    " if spec then",
    // argv index i is vararg i + 1; a negative last counts back from argc (= select('#', ...)).
    "  if spec[1] > 0 then",
    "   local last = spec[2] < 0 and select('#', ...) + spec[2] or spec[2]",
    "   for i = spec[1], last, spec[3] do local k = select(i + 1, ...) if k ~= nil then __gw_key(tostring(k)) end end",
    "  end",
    "  return",
    " end",
    " local ks = __gw_r.pcall('COMMAND', 'GETKEYS', ...)",
    " if type(ks) == 'table' and not ks.err then for _, k in ipairs(ks) do __gw_key(k) end end",
    "end",
    "local redis = setmetatable({",
    " call = function(...) __gw_check(...) return __gw_r.call(...) end,",
    " pcall = function(...) __gw_check(...) return __gw_r.pcall(...) end,",
    "}, { __index = __gw_r })",
    "local function __gw_done(res) if __gw_bad then error({ err = __gw_bad }) end return res end",
    "return __gw_done((function(...)",
  ].join(" ");
}

export interface Shebang {
  /** Every flag in `flags=`, in order. */
  flags: string[];
  /** Other words of the shebang line after `#!lua`, kept verbatim. */
  rest: string[];
}

/** Parses `#!lua flags=a,b` on the first line; undefined when the script has no shebang. */
export function parseShebang(source: string): Shebang | undefined {
  if (!source.startsWith("#!")) return undefined;
  const end = source.indexOf("\n");
  const line = end === -1 ? source : source.slice(0, end);
  const words = line.slice(2).trim().split(/\s+/);
  const flags: string[] = [];
  const rest: string[] = [];
  for (const word of words.slice(1)) {
    if (word.startsWith("flags=")) flags.push(...word.slice(6).split(",").filter(Boolean));
    else rest.push(word);
  }
  return { flags, rest: [words[0] ?? "", ...rest] };
}

/** The shebang line with its newline, and the rest (the whole text when there is no shebang). */
function splitShebang(source: string, hasShebang: boolean): { head: string; body: string } {
  if (!hasShebang) return { head: "", body: source };
  const newline = source.indexOf("\n");
  if (newline === -1) return { head: `${source}\n`, body: "" };
  return { head: source.slice(0, newline + 1), body: source.slice(newline + 1) };
}

export function sha1(text: string): string {
  return createHash("sha1").update(text, "utf8").digest("hex");
}

/**
 * Rewrites one script text for Redis 7 (see the module comment). Scripts without
 * `allow-key-locking` come back unchanged.
 */
export function translateScript(
  source: string,
  strictKeys: boolean,
  auditKeys = false,
): ScriptInfo {
  const sha = sha1(source);
  const shebang = parseShebang(source);
  const keyLocked = shebang?.flags.includes(KEY_LOCKING_FLAG) ?? false;
  const noWrites = shebang?.flags.includes("no-writes") ?? false;
  if (!keyLocked && auditKeys) {
    // The prelude shares the first line of the body (line 1 without a shebang, else line 2).
    const { head, body } = splitShebang(source, shebang !== undefined);
    const translated = `${head}${prelude("audit", sha, body)} ${body}\nend)(...))`;
    return { sha, translated, translatedSha: sha1(translated), keyLocked, noWrites };
  }
  if (!shebang || !keyLocked) {
    return { sha, translated: source, translatedSha: sha, keyLocked, noWrites };
  }
  const kept = shebang.flags.filter((f) => f !== KEY_LOCKING_FLAG);
  // A shebang with no flags still matters to Redis 7 (it turns off the legacy EVAL mode), so
  // the rewritten script keeps one, exactly as the original had.
  const line = `#!${[...shebang.rest, ...(kept.length ? [`flags=${kept.join(",")}`] : [])].join(" ")}`;
  const { body } = splitShebang(source, true);
  const translated = strictKeys
    ? `${line}\n${prelude("strict", sha, body)} ${body}\nend)(...))`
    : `${line}\n${body}`;
  return { sha, translated, translatedSha: sha1(translated), keyLocked, noWrites };
}

const SCRIPT_TEXT = new Set(["EVAL", "EVAL_RO"]);
const SCRIPT_SHA = new Set(["EVALSHA", "EVALSHA_RO"]);

/** Whether a command runs a Lua script. */
export function isScriptCall(name: string): boolean {
  return SCRIPT_TEXT.has(name) || SCRIPT_SHA.has(name);
}

/**
 * Original SHA -> rewritten script, for every script text that went through the gateway.
 * Like Redis's own cache it only grows until `SCRIPT FLUSH`; a SHA it does not know is passed
 * through untouched, so Redis answers NOSCRIPT and the client falls back to EVAL, which
 * registers the text again (e.g. after a gateway restart).
 */
export class ScriptRegistry {
  private readonly bySha = new Map<string, ScriptInfo>();

  /**
   * @param strictKeys fail flagged scripts that touch undeclared keys
   * @param auditKeys log (not fail) what unflagged scripts would violate if they were flagged
   */
  constructor(
    private readonly strictKeys: boolean,
    private readonly auditKeys = false,
  ) {}

  register(source: string): ScriptInfo {
    const known = this.bySha.get(sha1(source));
    if (known) return known;
    const info = translateScript(source, this.strictKeys, this.auditKeys);
    this.bySha.set(info.sha, info);
    return info;
  }

  rewrite(command: Command): Rewritten {
    const [name, ...args] = command;
    if (SCRIPT_TEXT.has(name) && args[0] !== undefined) {
      const info = this.register(args[0]);
      return { command: [name, info.translated, ...args.slice(1)], script: info };
    }
    if (SCRIPT_SHA.has(name) && args[0] !== undefined) {
      const info = this.bySha.get(args[0].toLowerCase());
      if (!info) return { command, script: "unknown" };
      return { command: [name, info.translatedSha, ...args.slice(1)], script: info };
    }
    if (name === "SCRIPT") return this.rewriteScriptCommand(command);
    return { command };
  }

  private rewriteScriptCommand(command: Command): Rewritten {
    const [, sub, ...args] = command;
    const verb = sub?.toUpperCase();
    if (verb === "LOAD" && args[0] !== undefined) {
      const info = this.register(args[0]);
      return {
        command: ["SCRIPT", "LOAD", info.translated],
        mapReply: (reply) => (reply instanceof Error ? reply : Buffer.from(info.sha)),
      };
    }
    if (verb === "EXISTS") {
      const mapped = args.map((sha) => this.bySha.get(sha.toLowerCase())?.translatedSha ?? sha);
      return { command: ["SCRIPT", "EXISTS", ...mapped] };
    }
    if (verb === "FLUSH") this.bySha.clear();
    return { command };
  }
}
