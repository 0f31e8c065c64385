import { describe, expect, it } from "vitest";
import { type CacheHarness, sleep, useWarmHarness } from "./harness";

/** Audit probes: option combinations, conflicting readers, many names, odd names. */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const pfx = () => `ao${Math.random().toString(36).slice(2, 8)}`;

describe("two readers of one key with different options", () => {
  it("a reader that declares tag b is not served an entry filled without b after invalidateTags(b)", async () => {
    const prefix = pfx();
    const a = h.cache({}, prefix);
    await a.getOrLoad("list:1", async () => "v1", { ...noEarly, tags: ["a"] });
    const b = h.cache({}, prefix);
    const first = await b.getOrLoad("list:1", async () => "v1-b", { ...noEarly, tags: ["b"] });
    console.log("reader b, first:", first.status, first.value);
    await b.invalidateTags("b");
    const after = await h.cache({}, prefix).getOrLoad("list:1", async () => "v2", {
      ...noEarly,
      tags: ["b"],
    });
    console.log("reader b after invalidateTags(b):", after.status, after.value);
    expect(after.value).toBe("v2");
  });

  it("a reader that omits versionKey is not served an entry whose version was bumped", async () => {
    const prefix = pfx();
    const a = h.cache({}, prefix);
    const opts = { ...noEarly, versionKey: "product:1", versionOf: (p: { v: number }) => p.v };
    await a.getOrLoad("product:1", async () => ({ v: 1 }), opts);
    await a.bumpVersion("product", 1, 2);
    const got = await h.cache({}, prefix).getOrLoad("product:1", async () => ({ v: 2 }), noEarly);
    const peek = await h.cache({}, prefix).get("product:1");
    console.log("no versionKey after bump:", got.status, got.value, "get():", peek?.status, peek?.value);
    expect(got.value).toEqual({ v: 2 });
  });
});

describe("extremes", () => {
  it("ttl, staleTtl and failSafe all at their 10-year maximum: set + read works", async () => {
    const prefix = pfx();
    const ten = 10 * 365 * 24 * 3_600_000;
    const c = h.cache({}, prefix);
    const w = await c.set("k", 1, { ttl: ten, staleTtl: ten, failSafe: ten });
    expect(w.written).toBe(true);
    const r = await h.cache({}, prefix).getOrLoad("k", async () => 2, noEarly);
    expect(r).toMatchObject({ status: "HIT", value: 1 });
    const i = await c.inspect("k");
    console.log("10y pttl", i.pttl, "ttlMs", r.ttlMs);
  });

  it("a 512-character key and a 512-code-point unicode key work end to end", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    const ascii = `k${"x".repeat(511)}`;
    const uni = "é😀".repeat(256);
    for (const key of [ascii, uni, "ключ:1", "a/b=c&d#e", "ü:ü"]) {
      await c.getOrLoad(key, async () => key, noEarly);
      const hit = await h.cache({}, prefix).getOrLoad(key, async () => "other", noEarly);
      expect([key.length, hit.status, hit.value === key]).toEqual([key.length, "HIT", true]);
    }
    expect(await c.invalidate(ascii, uni)).toBe(2);
  });

  it("2,000 tags on one entry: fill, hit, bump one", async () => {
    const prefix = pfx();
    const tags = Array.from({ length: 2000 }, (_, i) => `tag:${i}`);
    const c = h.cache({}, prefix);
    const miss = await c.getOrLoad("many", async () => 1, { ...noEarly, tags });
    const hit = await h.cache({}, prefix).getOrLoad("many", async () => 2, { ...noEarly, tags });
    await c.invalidateTags("tag:1999");
    const after = await h.cache({}, prefix).getOrLoad("many", async () => 3, { ...noEarly, tags });
    expect([miss.status, hit.status, after.status, after.value]).toEqual(["MISS", "HIT", "MISS", 3]);
  });

  it("a reader declaring none of an entry's 2,000 tagsOf tags: need round-trip then HIT", async () => {
    const prefix = pfx();
    const tagsOf = () => Array.from({ length: 2000 }, (_, i) => `t${i}`);
    const c = h.cache({}, prefix);
    await c.getOrLoad("many2", async () => 1, { ...noEarly, tagsOf });
    const hit = await h.cache({}, prefix).getOrLoad("many2", async () => 2, { ...noEarly, tagsOf });
    expect(hit.status).toBe("HIT");
  });

  it("invalidateTags of 20,000 tags and invalidate of 20,000 keys in one request", async () => {
    const c = h.cache({}, pfx());
    const tags = Array.from({ length: 20_000 }, (_, i) => `g${i}`);
    const bumped = await c.invalidateTags(...tags);
    expect(Object.keys(bumped)).toHaveLength(20_000);
    const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
    expect(await c.invalidate(...keys)).toBe(0);
    const applied = await c.apply({ keys, tags, versions: { a: 1 } });
    expect(applied).toMatchObject({ tagsBumped: 20_000, versionsAdvanced: 1 });
  }, 60_000);

  it("ttl 1 ms and jitter 1: entry expires, next read loads", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    await c.getOrLoad("short", async () => 1, { ...noEarly, ttl: 1, jitter: 1 });
    await sleep(20);
    const r = await h.cache({}, prefix).getOrLoad("short", async () => 2, { ...noEarly, ttl: 1 });
    expect(r).toMatchObject({ status: "MISS", value: 2 });
  });

  it("expiresAt already past on getOrLoad: answered, nothing stays locked", async () => {
    const prefix = pfx();
    const c = h.cache({}, prefix);
    const r = await c.getOrLoad("past", async () => 1, { ...noEarly, expiresAt: Date.now() - 1000 });
    const t0 = Date.now();
    const r2 = await h.cache({}, prefix).getOrLoad("past", async () => 2, {
      ...noEarly,
      expiresAt: Date.now() - 1000,
    });
    console.log("expiresAt past:", r.status, r.ttlMs, r2.status, Date.now() - t0, "ms");
    expect(Date.now() - t0).toBeLessThan(300);
  });
});

describe("negative caching", () => {
  it("MISS and HIT of a cached versioned null report the same version", async () => {
    const prefix = pfx();
    const opts = {
      ...noEarly,
      versionKey: "u:1",
      versionOf: (u: { v: number } | null) => u?.v ?? 0,
      negativeTtl: 10_000,
    };
    const miss = await h.cache({}, prefix).getOrLoad("u:1", async () => null, opts);
    const hit = await h.cache({}, prefix).getOrLoad("u:1", async () => null, opts);
    expect([miss.status, hit.status]).toEqual(["MISS", "HIT"]);
    expect(hit.version).toBe(miss.version);
  });
});
