import { describe, expect, it } from "vitest";
import { declaredTags, KnownEntries, MAX_PREFIXES } from "../../../src/cache/read/known";
import { seeded } from "./harness";

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
  });

  it("is bounded over all prefixes: one per tenant cannot grow the isolate's memory", () => {
    const known = new KnownEntries(4);
    for (const key of ["a", "b", "c", "d"]) known.learn("p", key, { freshUntil: later() });
    for (let i = 0; i < 4; i++) known.learn(`tenant${i}`, "a", { freshUntil: later() });
    for (const key of ["a", "b", "c", "d"]) expect(known.freshNow("p", key)).toBe(false);
    for (let i = 0; i < 4; i++) expect(known.freshNow(`tenant${i}`, "a")).toBe(true);
  });

  it("forgets the invalidations of the least used prefixes past MAX_PREFIXES, and then no entry learned there before is believed fresh", () => {
    const known = new KnownEntries(10 * MAX_PREFIXES);
    known.learn("p", "a", { tags: ["t"], freshUntil: later() });
    known.learn("p", "b", { freshUntil: later() });
    known.expireWhere("p", ["t"], []);
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.freshNow("p", "b")).toBe(true);
    // MAX_PREFIXES other prefixes push p's record (and its bump of t) out.
    for (let i = 0; i < MAX_PREFIXES; i++) known.learn(`q${i}`, "x", { freshUntil: later() });
    // a must not come back to life now that the bump is forgotten; b goes with it (one more
    // request, never a wrong answer).
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.freshNow("p", "b")).toBe(false);
    expect(known.tags("p", "a")).toEqual(["t"]);
    // Learned again, fresh again.
    known.learn("p", "b", { freshUntil: later() });
    expect(known.freshNow("p", "b")).toBe(true);
    expect(known.freshNow("p", "a")).toBe(false);
  });

  it("a prefix in steady use keeps its record however many others come and go", () => {
    const known = new KnownEntries(10 * MAX_PREFIXES);
    known.learn("p", "a", { tags: ["t"], freshUntil: later() });
    for (let i = 0; i < 4 * MAX_PREFIXES; i++) {
      known.learn(`q${i}`, "x", { freshUntil: later() });
      known.learn("p", "b", { freshUntil: later() }); // p is used all along
    }
    expect(known.freshNow("p", "a")).toBe(true);
    known.expireWhere("p", ["t"], []);
    expect(known.freshNow("p", "a")).toBe(false);
    expect(known.freshNow("p", "b")).toBe(true);
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

  it("an entry learned again after a bump is fresh again; one learned before stays expired", () => {
    const known = new KnownEntries();
    known.learn("p", "a", { tags: ["t1"], freshUntil: later() });
    known.learn("p", "b", { tags: ["t1"], freshUntil: later() });
    known.expireWhere("p", ["t1"], []);
    known.learn("p", "a", { freshUntil: later() }); // refilled after the bump
    expect(known.freshNow("p", "a")).toBe(true);
    expect(known.freshNow("p", "b")).toBe(false);
    known.expirePrefix("p");
    expect(known.freshNow("p", "a")).toBe(false);
    known.learn("p", "b", { freshUntil: later() });
    expect(known.freshNow("p", "b")).toBe(true);
  });

  it("a bump forgotten for room still expires every entry learned before it", () => {
    const known = new KnownEntries();
    known.learn("p", "old", { tags: ["t0"], freshUntil: later() });
    known.learn("p", "untagged", { freshUntil: later() });
    known.expireWhere("p", ["t0"], []);
    known.learn("p", "mid", { tags: ["t0"], freshUntil: later() });
    // 1,000 other tags bumped: the record of t0's bump is dropped for room.
    for (let i = 1; i <= 1000; i++) known.expireWhere("p", [`t${i}`], []);
    expect(known.freshNow("p", "old")).toBe(false);
    // Learned after t0's bump, untouched by the others: still fresh.
    expect(known.freshNow("p", "mid")).toBe(true);
    // Learned before a forgotten bump, whatever its tags: no longer trusted (a wrong "not
    // fresh" costs one request, a wrong "fresh" two).
    expect(known.freshNow("p", "untagged")).toBe(false);
    known.learn("p", "new", { tags: ["t0"], freshUntil: later() });
    expect(known.freshNow("p", "new")).toBe(true);
  });

  it("says what scanning every entry at each bump would say, through long random churn", () => {
    // The reference: the scan KnownEntries did before it recorded bumps (O(entries) per bump).
    type Entry = { tags: string[]; freshUntil: number; versionKey: string };
    const model = new Map<string, Entry>();
    const known = new KnownEntries();
    const random = seeded(11);
    const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)] as T;
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const tags = ["t1", "t2", "t3", "t4", "t5"];
    const versionKeys = ["v1", "v2", "v3", ...keys.slice(0, 5)];
    const now = Date.now();
    for (let step = 0; step < 20_000; step++) {
      const op = random();
      const key = pick(keys);
      if (op < 0.5) {
        const entry = {
          tags: tags.filter(() => random() < 0.3),
          freshUntil: random() < 0.1 ? now - 1 : now + 60_000,
          versionKey: random() < 0.5 ? key : pick(versionKeys),
        };
        model.set(key, entry);
        known.learn("p", key, entry);
      } else if (op < 0.6) {
        const had = model.get(key);
        if (had) had.freshUntil = 0;
        known.expire("p", key);
      } else if (op < 0.9) {
        const bumped = tags.filter(() => random() < 0.2);
        const versions = random() < 0.5 ? [pick(versionKeys)] : [];
        for (const name of versions) {
          const had = model.get(name);
          if (had) had.freshUntil = 0;
        }
        for (const e of model.values()) {
          if (versions.includes(e.versionKey) || e.tags.some((t) => bumped.includes(t))) {
            e.freshUntil = 0;
          }
        }
        known.expireWhere("p", bumped, versions);
      } else if (op < 0.91) {
        for (const e of model.values()) e.freshUntil = 0;
        known.expirePrefix("p");
      }
      const probe = pick(keys);
      const expected = (model.get(probe)?.freshUntil ?? 0) > now;
      expect(known.freshNow("p", probe, now), `step ${step}, ${probe}`).toBe(expected);
    }
  });

  it("declares the caller's tags first, then the learned ones it did not name", () => {
    expect(declaredTags(["products"], ["category:3", "products"])).toEqual([
      "products",
      "category:3",
    ]);
    expect(declaredTags([], [])).toEqual([]);
  });
});
