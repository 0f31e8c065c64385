import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as scripts from "../../../src/cache/scripts";
import { outputFile, renderScriptsModule } from "../../../tools/build-lua";

describe("embedded Lua scripts", () => {
  it("match the .lua files (run `npm run build:lua` after editing one)", () => {
    expect(readFileSync(outputFile, "utf8")).toBe(renderScriptsModule());
  });

  it("carry the SHA-1 that EVALSHA needs", () => {
    const all = Object.values(scripts).filter(
      (s): s is scripts.LuaScript => typeof s === "object" && s !== null && "sha1" in s,
    );
    expect(all.length).toBeGreaterThanOrEqual(10);
    for (const s of all) {
      expect(s.sha1).toBe(createHash("sha1").update(s.source).digest("hex"));
    }
  });
});
