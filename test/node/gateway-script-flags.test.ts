import { describe, expect, it } from "vitest";
import {
  parseShebang,
  ScriptRegistry,
  sha1,
  translateScript,
} from "../../tools/upstash-gateway/scripts";

/** The shebang rewriting as pure functions (end to end: gateway-scripts.test.ts). */
describe("gateway: Upstash-only Lua flags", () => {
  it("drops allow-key-locking and keeps every other flag and line (strictKeys off)", () => {
    const body = "\n  local key = KEYS[1]\n  return redis.call('INCR', key)\n";
    const lax = (s: string) => translateScript(s, false).translated;
    expect(lax(`#!lua flags=allow-key-locking${body}`)).toBe(`#!lua${body}`);
    expect(lax(`#!lua flags=no-writes,allow-key-locking${body}`)).toBe(
      `#!lua flags=no-writes${body}`,
    );
    for (const same of [`#!lua flags=no-writes${body}`, `#!lua${body}`, body, "return 1"]) {
      expect(lax(same)).toBe(same);
    }
  });

  it("parses the shebang's flags and other words", () => {
    expect(parseShebang("#!lua flags=no-writes,allow-key-locking\nreturn 1")).toEqual({
      flags: ["no-writes", "allow-key-locking"],
      rest: ["lua"],
    });
    expect(parseShebang("return 1")).toBeUndefined();
  });

  it("keeps the body's lines where they were when strict mode adds its prelude", () => {
    const source = "#!lua flags=allow-key-locking\nlocal a = 1\nreturn a";
    const { translated } = translateScript(source, true);
    expect(translated.split("\n")[0]).toBe("#!lua");
    expect(translated.split("\n")[1]).toMatch(/ local a = 1$/);
    expect(translated.split("\n")[2]).toBe("return a");
  });

  it("answers EVALSHA of the client's hash with the script Redis stored", () => {
    const registry = new ScriptRegistry(false);
    const script = "#!lua flags=allow-key-locking\nreturn 1";
    const local = "#!lua\nreturn 1";
    // Before any EVAL the hash goes through unchanged (Redis answers NOSCRIPT; the client EVALs).
    expect(registry.rewrite(["EVALSHA", sha1(script), "0"]).command).toEqual([
      "EVALSHA",
      sha1(script),
      "0",
    ]);
    expect(registry.rewrite(["EVAL", script, "1", "k"]).command).toEqual(["EVAL", local, "1", "k"]);
    expect(registry.rewrite(["EVALSHA", sha1(script), "1", "k"]).command).toEqual([
      "EVALSHA",
      sha1(local),
      "1",
      "k",
    ]);
    // Scripts without the flag, and other commands, are untouched.
    expect(registry.rewrite(["EVAL", "return 2", "0"]).command).toEqual(["EVAL", "return 2", "0"]);
    expect(registry.rewrite(["GET", "k"]).command).toEqual(["GET", "k"]);
  });
});
