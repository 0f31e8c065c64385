import { describe, expect, it } from "vitest";
import { declaredTags, KnownEntries } from "../../../src/cache/read/known";

/** The isolate's record of entries (pure bookkeeping: no Redis involved). */
describe("KnownEntries", () => {
  const later = () => Date.now() + 60_000;

  it("remembers tags and freshness; expire forgets only the freshness", () => {
    const known = new KnownEntries();
    known.learn("p", "product:1", { tags: ["category:3"], freshUntil: later() });
    expect(known.freshNow("p", "product:1")).toBe(true);
    known.expire("p", "product:1");
    expect(known.freshNow("p", "product:1")).toBe(false);
    expect(known.tags("p", "product:1")).toEqual(["category:3"]);
    expect(known.tags("other", "product:1")).toEqual([]);
  });

  it("a version bump expires the entry named like it, and entries under an aliased version key", () => {
    const known = new KnownEntries();
    known.learn("p", "product:1", { freshUntil: later(), versionKey: "product:1" });
    known.learn("p", "product-slug:mug", { freshUntil: later(), versionKey: "product:2" });
    known.learn("p", "product:2", { freshUntil: later(), versionKey: "product:2" });
    known.expireWhere("p", [], ["product:2"]);
    expect(known.freshNow("p", "product:1")).toBe(true);
    expect(known.freshNow("p", "product:2")).toBe(false);
    expect(known.freshNow("p", "product-slug:mug")).toBe(false);
  });

  it("a tag bump expires the entries learned with that tag, in its prefix only", () => {
    const known = new KnownEntries();
    known.learn("p", "a", { tags: ["t1"], freshUntil: later() });
    known.learn("p", "b", { tags: ["t2"], freshUntil: later() });
    known.learn("q", "a", { tags: ["t1"], freshUntil: later() });
    known.expireWhere("p", ["t1"], []);
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.freshNow("p", "b")).toBe(true);
    expect(known.freshNow("q", "a")).toBe(true);
  });

  it("a pattern purge expires every entry of its prefix and keeps their tags", () => {
    const known = new KnownEntries();
    known.learn("p", "a", { tags: ["t1"], freshUntil: later() });
    known.learn("q", "a", { freshUntil: later() });
    known.expirePrefix("p");
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.tags("p", "a")).toEqual(["t1"]);
    expect(known.freshNow("q", "a")).toBe(true);
  });

  it("is bounded: an entry still being read outlives the ones learned after it", () => {
    const known = new KnownEntries(4);
    for (const key of ["a", "b", "c", "d"]) known.learn("p", key, { freshUntil: later() });
    // a has aged past half the bound: read again, it moves to the young end.
    known.learn("p", "a", { freshUntil: later() });
    known.learn("p", "e", { freshUntil: later() });
    expect(known.freshNow("p", "b")).toBe(false);
    for (const key of ["a", "c", "d", "e"]) expect(known.freshNow("p", key)).toBe(true);
    // Bounded per prefix: another prefix's entries do not push these out.
    for (let i = 0; i < 10; i++) known.learn("q", `k${i}`, { freshUntil: later() });
    expect(known.freshNow("p", "a")).toBe(true);
  });

  it("re-learning updates in place what it is told and keeps the rest", () => {
    const known = new KnownEntries();
    known.learn("p", "a", { tags: ["t1"], freshUntil: later(), versionKey: "v:a" });
    known.learn("p", "a", { freshUntil: 0 });
    expect(known.tags("p", "a")).toEqual(["t1"]);
    expect(known.freshNow("p", "a")).toBe(false);
    known.learn("p", "a", { tags: ["t2"], freshUntil: later() });
    known.expireWhere("p", [], ["v:a"]); // still known under its version key
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.tags("p", "a")).toEqual(["t2"]);
  });

  it("declares the caller's tags first, then the learned ones it did not name", () => {
    expect(declaredTags(["products"], ["category:3", "products"])).toEqual([
      "products",
      "category:3",
    ]);
    expect(declaredTags([], [])).toEqual([]);
  });
});
