import { describe, expect, it } from "vitest";
import { InvalidKeyError } from "../../../src/cache/index";
import { assertName } from "../../../src/cache/keys";
import { DEFAULTS, resolveOptions } from "../../../src/cache/options";

// Pure function: no Redis needed.
describe("resolveOptions", () => {
  it("takes the call's option, else the engine's default, else the built-in one", () => {
    const opts = resolveOptions("k", { ttl: 5_000, leaseTtl: 900 }, { ttl: 1_000 });
    expect(opts.ttl).toBe(1_000);
    expect(opts.leaseTtl).toBe(900);
    expect(opts.waitBudget).toBe(DEFAULTS.waitBudget);
    expect(opts.jitter).toBe(DEFAULTS.jitter);
  });

  it("an option given as undefined falls back to the default instead of erasing it", () => {
    const opts = resolveOptions("k", { ttl: 5_000 }, { ttl: undefined, staleTtl: undefined });
    expect(opts.ttl).toBe(5_000);
    expect(opts.staleTtl).toBe(DEFAULTS.staleTtl);
  });

  it("precomputes what every read uses", () => {
    const at = new Date(Date.UTC(2030, 0, 1));
    const opts = resolveOptions(
      "k",
      {},
      {
        tags: ["a", "b", "a"],
        earlyRefresh: { beta: 2 },
        failSafe: true,
        expiresAt: at,
        consistency: "replica",
      },
    );
    expect(opts.tagList).toEqual(["a", "b"]);
    expect(opts.beta).toBe(2);
    expect(opts.failSafeMs).toBe(3_600_000);
    expect(opts.expiresAtMs).toBe(at.getTime());
    expect(opts.replica).toBe(true);
    const plain = resolveOptions("k", {}, { earlyRefresh: false });
    expect([plain.beta, plain.failSafeMs, plain.replica, plain.tagList]).toEqual([0, 0, false, []]);
  });

  it("validates the key, the version key and every tag before any request", () => {
    expect(() => resolveOptions("bad key", {}, {})).toThrow(InvalidKeyError);
    expect(() => resolveOptions("k", {}, { versionKey: "a*b" })).toThrow(InvalidKeyError);
    expect(() => resolveOptions("k", { tags: ["ok", "no pe"] }, {})).toThrow(InvalidKeyError);
  });
});

describe("assertName", () => {
  // The rule, as documented: 1-512 characters, no whitespace, control characters or * ? [ ] \.
  const rule = (name: string) => /^[^\s*?[\]\\\p{Cc}]{1,512}$/u.test(name);
  const verdict = (name: string) => {
    try {
      assertName("key", name);
      return true;
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidKeyError);
      return false;
    }
  };

  it("accepts and refuses every ASCII character exactly as the rule says (its fast path)", () => {
    for (let code = 0; code < 128; code++) {
      const c = String.fromCharCode(code);
      for (const name of [c, `product:${c}:1`, `${c}x`]) {
        expect(verdict(name), JSON.stringify(name)).toBe(rule(name));
      }
    }
  });

  it("follows the rule beyond ASCII and at the length limit", () => {
    const names = [
      "é:1",
      "商品:42",
      "🚀",
      "a\u0085b",
      "a\u00a0b",
      "a\u2028b",
      "a\u3000b",
      "x".repeat(512),
      "x".repeat(513),
      "",
    ];
    for (const name of names) expect(verdict(name), JSON.stringify(name)).toBe(rule(name));
    // Many distinct names in a row (a large catalogue) are all still checked.
    for (let i = 0; i < 30_000; i++) expect(verdict(`product:${i}`)).toBe(true);
    expect(verdict("product:30000 ")).toBe(false);
  });
});
