import { describe, expect, it } from "vitest";
import { BoundedMap } from "../../../src/cache/bounded-map";
import { seeded } from "./harness";

// Pure data structure: no Redis needed.
describe("BoundedMap", () => {
  it("drops the oldest insertion past its bound; touch moves a key to the young end", () => {
    const m = new BoundedMap<string, number>(2);
    m.set("a", 1).set("b", 2).set("c", 3);
    expect([...m.keys()]).toEqual(["b", "c"]);
    m.touch("b", 20);
    m.set("d", 4);
    expect([...m.entries()]).toEqual([
      ["b", 20],
      ["d", 4],
    ]);
    m.set("b", 21); // replacing in place keeps its place
    m.set("e", 5);
    expect([...m.keys()]).toEqual(["d", "e"]);
  });

  it("tells onDrop of each entry it drops for room, not of deletes", () => {
    const dropped: Array<[string, number]> = [];
    const m = new BoundedMap<string, number>(2, (key, value) => dropped.push([key, value]));
    m.set("a", 1).set("b", 2);
    m.delete("b");
    m.set("c", 3).set("d", 4);
    expect(dropped).toEqual([["a", 1]]);
    expect([...m.keys()]).toEqual(["c", "d"]);
  });

  it("evicts exactly like a naive model through long random churn (its cursor never skips one)", () => {
    const random = seeded(7);
    const m = new BoundedMap<number, number>(50);
    const model: number[] = []; // insertion order, oldest first
    for (let i = 0; i < 20_000; i++) {
      const key = Math.floor(random() * 120);
      const op = random();
      if (op < 0.5) {
        m.set(key, i);
        if (!model.includes(key)) model.push(key);
      } else if (op < 0.8) {
        m.touch(key, i);
        const at = model.indexOf(key);
        if (at >= 0) model.splice(at, 1);
        model.push(key);
      } else {
        m.delete(key);
        const at = model.indexOf(key);
        if (at >= 0) model.splice(at, 1);
      }
      while (model.length > 50) model.shift();
      if (i % 500 === 0) {
        m.clear();
        model.splice(0);
      }
      expect(m.size).toBe(model.length);
    }
    expect([...m.keys()]).toEqual(model);
  });
});
