import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Flight, FlightRegistry } from "../../../src/cache/read/coalesce";

/**
 * When a follower looks at its flight (src/cache/read/coalesce.ts). Followers cannot be woken
 * by the leader across requests in workerd, so they look on their own timers; these pin that
 * they look when the leader expects its answer (one round trip after a read, the announced
 * time after a load began) instead of on a fixed 5 ms beat, and that a late answer does not
 * make them look more often than that beat would. Flight is plain in-memory state: fake timers
 * drive it.
 */
beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  vi.setSystemTime(1_000_000);
});
afterEach(() => {
  vi.useRealTimers();
});

const result = {
  value: 1,
  status: "HIT" as const,
  version: null,
  ageMs: 0,
  ttlMs: 0,
  staleTtlMs: 0,
};

/** A follower (began at sequence 0) waiting on `flight`; `at()` is when it got the outcome. */
function follower(flight: Flight) {
  const start = Date.now();
  let doneAt: number | undefined;
  void flight.wait(start + 10_000, 0).then(() => {
    doneAt = Date.now() - start;
  });
  return { at: () => doneAt };
}

/** Advances the fake clock 1 ms at a time until `until` ms have passed. */
async function runFor(ms: number) {
  for (let i = 0; i < ms; i++) await vi.advanceTimersByTimeAsync(1);
}

describe("a follower looks when the leader expects its answer", () => {
  it("one round trip after the leader's read: it sees the answer within a millisecond", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(30);
    const flight = registry.lead("k", Date.now() + 2_000);
    const seq = flight.sending(); // the leader's read goes out, expected back in 30 ms
    const f = follower(flight);
    await runFor(31);
    flight.settle({ ok: true, result, vouchedAt: seq });
    await runFor(1);
    // A fixed 5 ms beat would have looked at 30 and 35: it would see this at 35.
    expect(f.at()).toBeDefined();
    expect(f.at()).toBeLessThanOrEqual(32);
  });

  it("the announced load time after a load began", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(5);
    const flight = registry.lead("k", Date.now() + 2_000);
    const seq = flight.sending(48); // the loader is expected to take 48 ms
    const f = follower(flight);
    await runFor(48);
    flight.offer({ ok: true, result, vouchedAt: seq });
    await runFor(1);
    expect(f.at()).toBeLessThanOrEqual(49);
  });

  it("a late answer costs no more looks than the 5 ms beat", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(30);
    const flight = registry.lead("k", Date.now() + 2_000);
    const seq = flight.sending();
    const timers = vi.spyOn(globalThis, "setTimeout");
    const f = follower(flight);
    await runFor(200);
    flight.settle({ ok: true, result, vouchedAt: seq });
    await runFor(5);
    expect(f.at()).toBeDefined();
    // A 5 ms beat looks 41 times until it sees an answer given at 200 ms. Here: 2 looks to reach
    // the expected time, 5 one ms apart, then the beat: 41 too.
    expect(timers.mock.calls.length).toBeLessThanOrEqual(41);
    expect(timers.mock.calls.length).toBeGreaterThan(10);
  });
});

describe("FlightRegistry.roundTripMs", () => {
  it("starts at the first round trip, then moves a tenth of the way to each new one", () => {
    const registry = new FlightRegistry();
    expect(registry.roundTripMs).toBe(0);
    registry.recordRoundTrip(20);
    expect(registry.roundTripMs).toBe(20);
    registry.recordRoundTrip(30);
    expect(registry.roundTripMs).toBeCloseTo(21);
  });
});
