import { leasePollDelay } from "../policy";

/**
 * How long a waiter sleeps before looking again while another isolate holds the lease.
 *
 * The holder announces its expected load time with the lease (acquire.lua stores it in the lease
 * value and answers waiters with `eta`: ms until that load should be done, on Redis's clock).
 * A waiter sleeps about that long (plus a small margin), then
 * looks once. Only when the value is still not there (the load is overdue) or nothing was
 * announced does it fall back to the short exponential backoff (10 ms doubling to 200 ms).
 * Never past the lease's expiry: then it takes the lease over.
 *
 * @example
 * // announced: done in 180 ms → sleep ≈ 180 + 18 (+ jitter)
 * nextCheckDelay({ eta: 180, leasePttl: 1800, backoffs: 0 }, Math.random);
 */
export function nextCheckDelay(
  state: {
    /** ms until the holder expects to be done (≤ 0: overdue); undefined: nothing announced. */
    eta: number | undefined;
    /** The load time the holder announced, when it announced one. */
    estimate?: number;
    /** ms until the lease expires (PTTL), when known. */
    leasePttl: number | undefined;
    /** Backoff steps already taken (overdue or unannounced looks). */
    backoffs: number;
  },
  random: () => number,
): { delay: number; backoff: boolean } {
  const announced = state.eta !== undefined && state.eta > 0;
  let delay: number;
  if (announced) {
    const eta = state.eta as number;
    // `eta` is on Redis's clock at the read. Sleeping `eta` from the reply makes the look land
    // half a round trip after the holder expects to be done, which is when its fill lands if
    // its round trips are like ours: on a busy machine both grow together, so the wait scales
    // with them (sleeping eta − rtt/2 looked too early there: the fill had not landed, and a
    // third look followed). 10 % (≥ 3 ms) more covers a load slower than the estimate, and
    // jitter keeps isolates out of lockstep.
    const margin = Math.max(3, eta * 0.1) * (1 + random() * 0.5);
    delay = Math.ceil(eta + margin);
  } else {
    delay = leasePollDelay(state.backoffs, random);
    // Overdue: the load runs slower than announced (a busy database, a cold connection). Look
    // again after half the announced time at least, not every few ms.
    if (state.estimate !== undefined) delay = Math.max(delay, Math.ceil(state.estimate / 2));
  }
  if (state.leasePttl !== undefined && state.leasePttl >= 0) {
    delay = Math.min(delay, state.leasePttl + 1);
  }
  return { delay: Math.max(1, delay), backoff: !announced };
}
