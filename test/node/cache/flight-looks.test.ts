import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Flight, Outcome } from "../../../src/cache/read/flight";
import { FlightRegistry } from "../../../src/cache/read/flights";

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

/**
 * A follower (began at sequence `startedAt`) waiting on `flight`: `at()` is how long after it
 * began waiting it got the outcome, `outcome()` what it got.
 */
function follower(flight: Flight, startedAt = 0) {
  const start = Date.now();
  let doneAt: number | undefined;
  let got: Outcome | null | undefined;
  void flight.wait(start + 10_000, startedAt).then((outcome) => {
    doneAt = Date.now() - start;
    got = outcome;
  });
  return { at: () => doneAt, outcome: () => got };
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

describe("checks for followers that joined after the leader's request went out (read/checks.ts)", () => {
  /** A flight whose leader sent a read, and a follower that began after it (sequence `late`). */
  function lateFollower(registry: FlightRegistry) {
    const flight = registry.lead("k", Date.now() + 2_000);
    const seq = flight.sending();
    const late = registry.tick();
    return { flight, seq, late };
  }

  it("only a follower that began after the leader's read or fill went out wants one, once", () => {
    const registry = new FlightRegistry();
    const flight = registry.lead("k", Date.now() + 2_000);
    const early = registry.tick();
    expect(flight.wantsCheck(early)).toBe(false); // nothing sent yet: the leader's read will vouch
    flight.sending();
    expect(flight.wantsCheck(early)).toBe(false); // began before the read went out
    const late = registry.tick();
    expect(flight.wantsCheck(late)).toBe(true);
    flight.checkSent(registry.tick());
    expect(flight.needsCheck).toBe(false); // sent after it began: covers it
    expect(flight.wantsCheck(late)).toBe(false);
    expect(flight.wantsCheck(registry.tick())).toBe(true); // a later one needs a later check
    // While the leader loads, a check would find the entry being replaced: none is wanted.
    flight.sending(50, false);
    expect(flight.wantsCheck(registry.tick())).toBe(false);
  });

  it("vouches only with the outcome's own fill id, and only for followers that began before it was sent", () => {
    const registry = new FlightRegistry();
    const { flight, seq, late } = lateFollower(registry);
    const check = registry.tick();
    const later = registry.tick();
    flight.checkSent(check);
    flight.checked(check, "fillA");
    const outcome = { ok: true as const, result, vouchedAt: seq, id: "fillA" };
    expect(flight.checkVouches(outcome, late)).toBe(true);
    expect(flight.checkVouches(outcome, later)).toBe(false); // began after the check went out
    expect(flight.checkVouches({ ...outcome, id: "fillB" }, late)).toBe(false); // another fill
    expect(flight.checkVouches({ ...outcome, id: undefined }, late)).toBe(false);
    flight.checked(check, null);
    expect(flight.checkVouches(outcome, late)).toBe(false); // found nothing valid
  });

  it("a follower waits for a check that is out, and stops at twice the round trip (a cancelled carrier)", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(20);
    const { flight, seq, late } = lateFollower(registry);
    const f = follower(flight, late);
    flight.checkSent(registry.tick());
    flight.settle({ ok: true, result, vouchedAt: seq, id: "fillA" });
    await runFor(30);
    expect(f.at()).toBeUndefined(); // the check's answer is due: it waits for it
    await runFor(30);
    // Due by 2 × 20 + 5 ms: then it takes the unvouched outcome (and reads again itself).
    expect(f.at()).toBeGreaterThanOrEqual(45);
    expect(f.at()).toBeLessThanOrEqual(47);
    expect((f.outcome() as { id?: string }).id).toBe("fillA");
    expect(flight.checkVouches(f.outcome() as Outcome, late)).toBe(false);
  });

  it("when the leader's read was slow (a latency spike), the check gets as long as it took", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(20);
    const { flight, seq, late } = lateFollower(registry);
    const f = follower(flight, late);
    await runFor(10);
    flight.checkSent(registry.tick()); // at 10 ms
    await runFor(90);
    flight.settle({ ok: true, result, vouchedAt: seq, id: "fillA" }); // the read took 100 ms
    await runFor(100);
    expect(f.at()).toBeUndefined(); // 2 × 20 ms would have given up at 55 ms
    await runFor(20);
    // Due by 10 + 2 × 100 + 5 ms.
    expect(f.at()).toBeGreaterThanOrEqual(215);
    expect(f.at()).toBeLessThanOrEqual(217);
  });

  it("no wait on a check for what it cannot vouch for: an error, a fail-safe answer, a value with no fill id", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(20);
    const outcomes = [
      { ok: false as const, error: new Error("loader failed") },
      { ok: true as const, result: { ...result, failSafe: true }, id: "fillA" },
      { ok: true as const, result },
    ];
    for (const outcome of outcomes) {
      const { flight, late } = lateFollower(registry);
      flight.checkSent(registry.tick());
      flight.settle(outcome);
      const f = follower(flight, late);
      await runFor(1);
      expect(f.at()).toBe(0);
    }
    // The same flight with a fill id does wait for the check that is out.
    const { flight, late } = lateFollower(registry);
    flight.checkSent(registry.tick());
    flight.settle({ ok: true, result, id: "fillA" });
    const f = follower(flight, late);
    await runFor(5);
    expect(f.at()).toBeUndefined();
  });

  it("a check that answers wakes the follower within a millisecond of its expected time", async () => {
    const registry = new FlightRegistry();
    registry.recordRoundTrip(20);
    const { flight, seq, late } = lateFollower(registry);
    const f = follower(flight, late);
    const check = registry.tick();
    flight.checkSent(check);
    await runFor(2);
    flight.settle({ ok: true, result, vouchedAt: seq, id: "fillA" });
    await runFor(18);
    flight.checked(check, "fillA");
    await runFor(2);
    expect(f.at()).toBeGreaterThanOrEqual(20);
    expect(f.at()).toBeLessThanOrEqual(21);
  });
});
