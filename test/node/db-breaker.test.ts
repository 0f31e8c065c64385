import { afterEach, describe, expect, it } from "vitest";
import { CircuitOpenError, resetBreakers, throughBreaker } from "../../src/db/breaker";

/** The breaker's state machine with a clock the test moves (a pure function of time and calls). */
describe("connect breaker (src/db/breaker.ts)", () => {
  let now = 1_000;
  const clock = () => now;
  const failing = (error: unknown) => () => Promise.reject(error);
  afterEach(() => resetBreakers());

  it("opens after a failed connect: later connects fail at once with that failure as cause", async () => {
    const refused = new Error("connect: no answer within 5000 ms");
    await expect(throughBreaker("db", 2000, failing(refused), clock)).rejects.toBe(refused);
    let called = 0;
    const skipped = throughBreaker("db", 2000, async () => ++called, clock);
    await expect(skipped).rejects.toBeInstanceOf(CircuitOpenError);
    await expect(skipped).rejects.toHaveProperty("cause", refused);
    expect(called).toBe(0);
    // Another database is not affected.
    await expect(throughBreaker("other", 2000, async () => "ok", clock)).resolves.toBe("ok");
  });

  it("lets one probe through when the interval ends; its success closes the circuit", async () => {
    await expect(throughBreaker("db", 2000, failing(new Error("down")), clock)).rejects.toThrow();
    now += 2000;
    let release!: (v: string) => void;
    const probe = throughBreaker(
      "db",
      2000,
      () => new Promise<string>((r) => (release = r)),
      clock,
    );
    // While the probe runs, the others still fail fast.
    await expect(throughBreaker("db", 2000, async () => "x", clock)).rejects.toBeInstanceOf(
      CircuitOpenError,
    );
    release("connected");
    await expect(probe).resolves.toBe("connected");
    await expect(throughBreaker("db", 2000, async () => "again", clock)).resolves.toBe("again");
  });

  it("opens again when the probe fails", async () => {
    await expect(throughBreaker("db", 2000, failing(new Error("down")), clock)).rejects.toThrow();
    now += 2500;
    await expect(
      throughBreaker("db", 2000, failing(new Error("still down")), clock),
    ).rejects.toThrow("still down");
    await expect(throughBreaker("db", 2000, async () => "x", clock)).rejects.toBeInstanceOf(
      CircuitOpenError,
    );
  });

  it("does nothing with openMs 0", async () => {
    await expect(throughBreaker("db", 0, failing(new Error("down")), clock)).rejects.toThrow();
    await expect(throughBreaker("db", 0, async () => "ok", clock)).resolves.toBe("ok");
  });
});
