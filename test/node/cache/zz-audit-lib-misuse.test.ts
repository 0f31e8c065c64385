import { describe, expect, it } from "vitest";
import { EdgeCache } from "../../../src/cache";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Audit probes: API misuse as it happens with untyped input (a queue message's JSON body, a
 * JavaScript caller, `as any`). A demanding user expects a clear error, never a silent no-op
 * or a write to some other key.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const pfx = () => `am${Math.random().toString(36).slice(2, 8)}`;
// biome-ignore lint/suspicious/noExplicitAny: simulating untyped input
type Any = any;

describe("apply() with a string where an array belongs (an event body decoded from JSON)", () => {
  it("apply({keys: 'product:1'}) invalidates product:1 or throws", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    await c.getOrLoad("product:1", async () => "old", noEarly);
    const event = JSON.parse('{"keys":"product:1"}');
    const out = await c.apply(event).catch((e: unknown) => e);
    console.log("apply({keys: string}) ->", out);
    const after = await h.cache({}, prefix).getOrLoad("product:1", async () => "new", noEarly);
    console.log("after:", after.status, after.value);
    expect(out instanceof Error || after.value === "new").toBe(true);
  });

  it("apply({tags: 'products'}) bumps products or throws", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    await c.getOrLoad("list", async () => "old", { ...noEarly, tags: ["products"] });
    const out = await c.apply(JSON.parse('{"tags":"products"}')).catch((e: unknown) => e);
    console.log("apply({tags: string}) ->", out);
    const after = await h.cache({}, prefix).getOrLoad("list", async () => "new", {
      ...noEarly,
      tags: ["products"],
    });
    console.log("after:", after.status, after.value);
    expect(out instanceof Error || after.value === "new").toBe(true);
  });
});

describe("an array where rest arguments belong", () => {
  it("invalidateTags(['a','b']) bumps a and b or throws", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    await c.getOrLoad("x", async () => "old", { ...noEarly, tags: ["a"] });
    const out = await (c.invalidateTags as Any)(["a", "b"]).catch((e: unknown) => e);
    console.log("invalidateTags([a,b]) ->", out);
    const after = await h.cache({}, prefix).getOrLoad("x", async () => "new", { ...noEarly, tags: ["a"] });
    expect(out instanceof Error || after.value === "new").toBe(true);
  });

  it("invalidate(['k1','k2']) removes k1 and k2 or throws", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    await c.getOrLoad("k1", async () => "old", noEarly);
    const out = await (c.invalidate as Any)(["k1", "k2"]).catch((e: unknown) => e);
    console.log("invalidate([k1,k2]) ->", out);
    const after = await h.cache({}, prefix).getOrLoad("k1", async () => "new", noEarly);
    expect(out instanceof Error || after.value === "new").toBe(true);
  });
});

describe("non-string names", () => {
  it("getOrLoad(undefined) throws InvalidKeyError instead of caching under 'undefined'", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    const out = await c.getOrLoad(undefined as Any, async () => "v", noEarly).catch((e: unknown) => e);
    const peek = await c.get("undefined");
    console.log("getOrLoad(undefined) ->", out, "get('undefined') ->", peek?.value);
    expect(out).toBeInstanceOf(Error);
  });

  it("tags: [undefined] or [42] throw rather than create tag 'undefined'", async () => {
    const c = h.cache({}, pfx());
    const out = await c
      .getOrLoad("k", async () => 1, { ...noEarly, tags: [undefined as Any] })
      .catch((e: unknown) => e);
    console.log("tags [undefined] ->", out);
    expect(out).toBeInstanceOf(Error);
  });
});

describe("constructor", () => {
  it("new EdgeCache({redis: undefined}) fails at construction, not on first use", () => {
    expect(() => new EdgeCache({ redis: undefined as Any })).toThrow();
  });
});

describe("options silently ignored by the call they are given to", () => {
  it("set(k, v, {cacheIf: () => false}) does not write", async () => {
    const c = h.cache({}, pfx());
    const w = await c.set("k", 1, { cacheIf: () => false });
    console.log("set with cacheIf false ->", w);
    expect(w.written).toBe(false);
  });

  it("set(k, null, {negativeTtl: 5000}) stores the null for negativeTtl, not the default 60 s ttl", async () => {
    const c = h.cache({}, pfx());
    await c.set("k", null, { negativeTtl: 5000, jitter: 0 });
    const i = await c.inspect("k");
    console.log("set null with negativeTtl -> pttl", i.pttl);
    expect(i.pttl).toBeLessThanOrEqual(5000);
  });
});
