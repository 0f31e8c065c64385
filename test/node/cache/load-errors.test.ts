import { describe, expect, it } from "vitest";
import { IsolateTelemetry } from "../../../src/cache/telemetry";
import { type CacheHarness, gate, useWarmHarness } from "./harness";

/**
 * `load_errors` counts every loader call that threw, whichever path ran it: the lease holder,
 * a reader whose wait budget ran out, a follower that gave up on its flight, a BYPASS with
 * Redis down. (The README's stats: "backoff_skips … when it ends in an error, in load_errors".)
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const prefixOf = () => `le${Math.random().toString(36).slice(2, 8)}`;
const failing = async (): Promise<number> => {
  throw new Error("db down");
};
const counted = (isolate: IsolateTelemetry) => isolate.pendingCounters().get("load_errors") ?? 0;

describe("load_errors", () => {
  it("counts a failed load by a reader whose wait on another isolate's lease ran out", async () => {
    const prefix = prefixOf();
    const holder = gate<number>();
    const other = h.cache({}, prefix).getOrLoad("k", holder.load, noEarly);
    await holder.started; // another isolate holds the lease and loads
    const isolate = new IsolateTelemetry();
    const me = h.cache({ telemetry: { isolate } }, prefix);
    await expect(me.getOrLoad("k", failing, { ...noEarly, waitBudget: 30 })).rejects.toThrow();
    expect(counted(isolate)).toBe(1);
    holder.open(1);
    await other;
  });

  it("counts a failed load by a follower that gave up on its flight", async () => {
    const prefix = prefixOf();
    const isolate = new IsolateTelemetry();
    const cache = () => h.cache({ telemetry: { isolate } }, prefix);
    const slow = gate<number>();
    const leader = cache().getOrLoad("k", slow.load, noEarly);
    await slow.started;
    await expect(cache().getOrLoad("k", failing, { ...noEarly, waitBudget: 30 })).rejects.toThrow();
    expect(counted(isolate)).toBe(1);
    slow.open(1);
    await leader;
  });

  it("counts a failed load on the BYPASS path, with Redis down", async () => {
    const isolate = new IsolateTelemetry();
    const cache = h.cache({ telemetry: { isolate } }, prefixOf());
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    try {
      await expect(cache.getOrLoad("k", failing, noEarly)).rejects.toThrow("db down");
    } finally {
      await h.clearFaults();
    }
    expect(counted(isolate)).toBe(1);
  });
});
