import { describe, expect, it } from "vitest";
import { decideSweep, type SweepState, writeWindowMs } from "../../src/domain/outbox-sweep";

/**
 * The rules of OUTBOX_SWEEP_MINUTES one by one (decideSweep is pure); the cron against Redis
 * and Postgres: test/workers/outbox-sweep.test.ts.
 */

const NOW = Date.parse("2026-11-25T12:00:00Z");
const MIN = 60_000;
const policy = { everyMs: 60 * MIN, windowMs: 75_000 };
const intentAt = (ms: number) => `${ms}.wabcdef`;

/** A clean sweep `ago` ms before NOW that read `intent`, with the intent as it is now. */
const sweptAgo = (ago: number, intent: string | null, now: string | null = intent): SweepState => ({
  intent: now,
  swept: { at: NOW - ago, clean: true, intent },
});

describe("decideSweep", () => {
  it("reads the outbox on every tick when the setting is 0", () => {
    expect(decideSweep(sweptAgo(MIN, null), NOW, { ...policy, everyMs: 0 })).toEqual({
      sweep: true,
      why: "every tick (OUTBOX_SWEEP_MINUTES=0)",
    });
  });

  it("skips only after a clean, recent sweep with no intent since", () => {
    // The intent a sweep recreated (runScheduled, seedIntent), long enough before it.
    const seeded = `${NOW - 10 * MIN}.sabcdef`;
    expect(decideSweep(sweptAgo(5 * MIN, seeded), NOW, policy).sweep).toBe(false);
    const old = intentAt(NOW - 30 * MIN);
    expect(decideSweep(sweptAgo(5 * MIN, old), NOW, policy)).toEqual({
      sweep: false,
      why: "quiet: no write since the clean sweep of 2026-11-25T11:55:00.000Z",
    });
  });

  it("reads it with no record, or after a sweep that left rows pending", () => {
    expect(decideSweep({ intent: null, swept: null }, NOW, policy).why).toBe(
      "no record of an earlier sweep",
    );
    const dirty: SweepState = {
      intent: null,
      swept: { at: NOW - MIN, clean: false, intent: null },
    };
    expect(decideSweep(dirty, NOW, policy)).toEqual({
      sweep: true,
      why: "the last sweep left rows pending",
    });
  });

  it("reads it after any new intent, whatever its clock says", () => {
    const seen = intentAt(NOW - 30 * MIN);
    // A writer whose clock is an hour behind still changed the value.
    const behind = intentAt(NOW - 90 * MIN);
    expect(decideSweep(sweptAgo(5 * MIN, seen, behind), NOW, policy)).toEqual({
      sweep: true,
      why: "a write since the last sweep",
    });
    expect(decideSweep(sweptAgo(5 * MIN, null, intentAt(NOW)), NOW, policy).sweep).toBe(true);
  });

  it("reads it when the intent it saw was recorded within the write window before the sweep", () => {
    // The writer may have committed after the sweep's snapshot.
    const justBefore = intentAt(NOW - 5 * MIN - 74_000);
    expect(decideSweep(sweptAgo(5 * MIN, justBefore), NOW, policy)).toEqual({
      sweep: true,
      why: "a write just before the last sweep",
    });
    const longBefore = intentAt(NOW - 5 * MIN - 76_000);
    expect(decideSweep(sweptAgo(5 * MIN, longBefore), NOW, policy).sweep).toBe(false);
    // An intent it cannot read a time from is treated as recent.
    expect(decideSweep(sweptAgo(5 * MIN, "garbled"), NOW, policy).sweep).toBe(true);
  });

  it("reads it when the intent it saw is gone (evicted, deleted by hand)", () => {
    expect(decideSweep(sweptAgo(5 * MIN, intentAt(NOW - 30 * MIN), null), NOW, policy)).toEqual({
      sweep: true,
      why: "the intent record is gone",
    });
  });

  it("reads it when there is no intent record at all, even after a sweep that saw none", () => {
    // An intent recorded after that sweep and evicted since looks exactly like none ever
    // recorded: absence cannot be told apart, so it is never quiet.
    expect(decideSweep(sweptAgo(5 * MIN, null), NOW, policy)).toEqual({
      sweep: true,
      why: "no intent record (evicted, or never written)",
    });
  });

  it("reads it once more after a sweep that recreated the intent record", () => {
    // A writer's intent evicted just before that sweep read the state: the writer may have
    // committed after its snapshot, as for an intent recorded within the write window.
    const seeded = `${NOW - 5 * MIN}.sabcdef`;
    expect(decideSweep(sweptAgo(5 * MIN, seeded), NOW, policy)).toEqual({
      sweep: true,
      why: "the last sweep recreated the intent record (one may have been lost just before)",
    });
  });

  it("reads it once the last sweep is the setting's age, or from the future (a clock jump)", () => {
    expect(decideSweep(sweptAgo(60 * MIN, null), NOW, policy)).toEqual({
      sweep: true,
      why: "periodic (last sweep 60 min ago)",
    });
    expect(decideSweep(sweptAgo(59 * MIN, intentAt(NOW - 61 * MIN)), NOW, policy).sweep).toBe(
      false,
    );
    expect(decideSweep(sweptAgo(-10 * MIN, null), NOW, policy).sweep).toBe(true);
  });

  it("the write window covers a writer's connect and statements at their deadlines", () => {
    const defaults = { DB_CONNECT_TIMEOUT_MS: 5000, DB_QUERY_TIMEOUT_MS: 5000 };
    expect(writeWindowMs({ ...defaults, REDIS_TIMEOUT_MS: 1000 })).toBe(75_000);
  });

  it("the write window covers a COMMIT held by a slow intent SET (REDIS_TIMEOUT_MS, one retry)", () => {
    // The writer awaits its intent before COMMIT: with Redis' deadline above the statements',
    // the commit may come that long after the intent's time.
    const slowRedis = {
      DB_CONNECT_TIMEOUT_MS: 100,
      DB_QUERY_TIMEOUT_MS: 100,
      REDIS_TIMEOUT_MS: 60_000,
    };
    expect(writeWindowMs(slowRedis)).toBeGreaterThanOrEqual(2 * 60_000 + 100 + 30_000);
  });
});
