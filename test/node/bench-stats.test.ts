/**
 * The bench's paired bootstrap (bench/lib/stats.ts `percentileRatio`): pure, so tested without
 * Redis. It must find no difference where there is none, find a real one, and be reproducible.
 */
import { describe, expect, it } from "vitest";
import { percentileRatio, ratioText, seededRandom } from "../../bench/lib/stats";

/** `turns` turns of `per` latencies around `center` ms, each turn shifted by a shared drift. */
function turns(center: number, drift: readonly number[], per: number, seed: number): number[][] {
  const random = seededRandom(seed);
  return drift.map((d) => Array.from({ length: per }, () => center + d + (random() - 0.5) * 2));
}

describe("percentileRatio", () => {
  const drift = Array.from({ length: 50 }, (_, i) => Math.sin(i / 3) * 0.8); // machine drift
  it("puts 1 inside the interval when both sides are drawn alike", () => {
    const r = percentileRatio(turns(6.5, drift, 20, 1), turns(6.5, drift, 20, 2), 50);
    expect(r.turns).toBe(50);
    expect(r.low).toBeLessThan(1);
    expect(r.high).toBeGreaterThan(1);
    expect(r.high - r.low).toBeLessThan(0.05);
  });

  it("finds a 6 % gap and keeps 1 outside the interval", () => {
    const r = percentileRatio(turns(6.89, drift, 20, 3), turns(6.5, drift, 20, 4), 50);
    expect(r.ratio).toBeGreaterThan(1.04);
    expect(r.ratio).toBeLessThan(1.08);
    expect(r.low).toBeGreaterThan(1);
    expect(r.low).toBeLessThanOrEqual(r.ratio);
    expect(r.high).toBeGreaterThanOrEqual(r.ratio);
  });

  it("is reproducible, and pairs turns: a shared drift does not widen the interval", () => {
    const a = turns(6.89, drift, 20, 5);
    const b = turns(6.5, drift, 20, 6);
    expect(percentileRatio(a, b, 50)).toEqual(percentileRatio(a, b, 50));
    const paired = percentileRatio(a, b, 50);
    // The same samples with b's turns shuffled: the pairs no longer share their drift.
    const unpaired = percentileRatio(a, [...b].reverse(), 50);
    expect(paired.high - paired.low).toBeLessThan(unpaired.high - unpaired.low);
  });

  it("works for a tail percentile too, and prints as the bench prints it", () => {
    const r = percentileRatio(turns(70, drift, 200, 7), turns(60, drift, 200, 8), 99);
    expect(r.ratio).toBeGreaterThan(1.1);
    expect(r.low).toBeGreaterThan(1);
    expect(ratioText({ ratio: 1.0771, low: 1.0504, high: 1.1109 })).toBe(
      "×1.077, 95 % interval ×1.050–×1.111",
    );
  });
});
