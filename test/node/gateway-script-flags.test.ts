import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ScriptAliases, withoutUpstashFlags } from "../../tools/upstash-gateway/script-flags";

const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");

describe("gateway: Upstash-only Lua flags", () => {
  it("drops allow-key-locking and keeps every other flag and line", () => {
    const body = "\n  local key = KEYS[1]\n  return redis.call('INCR', key)\n";
    expect(withoutUpstashFlags(`#!lua flags=allow-key-locking${body}`)).toBe(`#!lua${body}`);
    expect(withoutUpstashFlags(`#!lua flags=no-writes,allow-key-locking${body}`)).toBe(
      `#!lua flags=no-writes${body}`,
    );
    for (const same of [`#!lua flags=no-writes${body}`, `#!lua${body}`, body, "return 1"]) {
      expect(withoutUpstashFlags(same)).toBe(same);
    }
  });

  it("answers EVALSHA of the client's hash with the script Redis stored", () => {
    const aliases = new ScriptAliases();
    const script = "#!lua flags=allow-key-locking\nreturn 1";
    const local = "#!lua\nreturn 1";
    // Before any EVAL the hash goes through unchanged (Redis answers NOSCRIPT; the client EVALs).
    expect(aliases.translate(["EVALSHA", sha1(script), "0"])).toEqual([
      "EVALSHA",
      sha1(script),
      "0",
    ]);
    expect(aliases.translate(["EVAL", script, "1", "k"])).toEqual(["EVAL", local, "1", "k"]);
    expect(aliases.translate(["EVALSHA", sha1(script), "1", "k"])).toEqual([
      "EVALSHA",
      sha1(local),
      "1",
      "k",
    ]);
    // Scripts without the flag, and other commands, are untouched.
    expect(aliases.translate(["EVAL", "return 2", "0"])).toEqual(["EVAL", "return 2", "0"]);
    expect(aliases.translate(["GET", "k"])).toEqual(["GET", "k"]);
  });
});
