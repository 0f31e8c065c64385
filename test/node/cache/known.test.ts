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

  it("is bounded: the least recently learned entry goes first", () => {
    const known = new KnownEntries(2);
    known.learn("p", "a", { freshUntil: later() });
    known.learn("p", "b", { freshUntil: later() });
    known.learn("p", "a", { freshUntil: later() }); // a is the most recent now
    known.learn("p", "c", { freshUntil: later() });
    expect(known.freshNow("p", "b")).toBe(false);
    expect(known.freshNow("p", "a")).toBe(true);
    expect(known.freshNow("p", "c")).toBe(true);
  });

  it("declares the caller's tags first, then the learned ones it did not name", () => {
    expect(declaredTags(["products"], ["category:3", "products"])).toEqual([
      "products",
      "category:3",
    ]);
    expect(declaredTags([], [])).toEqual([]);
  });
});
