import { privateCopy } from "../copy";
import type { CacheResult } from "../types";
import type { CheckSpec } from "./checks";
import type { Flight } from "./flight";
import type { FlightRegistry } from "./flights";

/**
 * Isolate-scope single flight: concurrent `getOrLoad`s of one key share one load across the
 * per-request engines of an isolate.
 *
 * workerd's rules shape it (see src/cache/README.md, "Coalescing across requests"):
 * - Only plain data crosses requests. A flight hands its followers a settled outcome (the
 *   leader's `CacheResult`, each follower getting its own `structuredClone` of the value, or the
 *   loader's error), never a Redis client, a Response or a stream ("Cannot perform I/O on behalf
 *   of a different request").
 * - No promise crosses requests, in either direction. A follower never awaits a promise the
 *   leader created, and the leader never resolves one a follower created: the leader writes its
 *   outcome into the flight (plain data) and each follower looks at it on its own timer, in its
 *   own request, when the leader expects its answer (`Flight.sending`). (Resolving the
 *   followers' promises from the leader's request was tried first: in workerd that fails with
 *   "Cannot perform I/O on behalf of a different request (I/O type: RefcountedFulfiller)",
 *   test/workers/coalesce.test.ts.)
 * - A leader's request can be cancelled mid-load (client gone): its code simply stops, nothing
 *   settles the flight, and a follower awaiting the leader's own promise would hang or be
 *   cancelled with it (cloudflare-docs#29797). Instead the leader keeps a plain `deadline` up to
 *   date (when its Redis lease would expire, or its Redis wait ends); a follower whose own timer
 *   finds the flight past its deadline takes over and runs the Redis path itself, where the dead
 *   leader's lease has expired, so the fill still happens once.
 */

export interface FlightPlan<T> {
  registry: FlightRegistry;
  id: string;
  waitBudget: number;
  leaseTtl: number;
  /** Runs the read path as the leader, with the wait budget left. */
  lead(flight: Flight, budget: number): Promise<CacheResult<T>>;
  /** The budget is spent while the leader is still alive: load without it (and without filling). */
  giveUp(waitedMs: number): Promise<CacheResult<T>>;
  /** Counted once per call that waits on another request's flight. */
  onFollow(): void;
  /**
   * What a check of this read's entry declares (read/checks.ts), for a follower that joined
   * after the leader's request went out; undefined when no check can vouch (replica reads).
   */
  checkSpec(): CheckSpec | undefined;
  /** Counted when a check vouched for this follower. */
  onChecked(): void;
}

/** Each follower gets its own copy: one request mutating its value cannot reach another's. */
function own<T>(result: CacheResult<T>): CacheResult<T> {
  return { ...result, value: privateCopy(result.value) };
}

/**
 * Joins the live flight of `plan.id` or leads a new one. A follower waits at most the wait
 * budget; when the leader turns out to be gone it leads a new flight with the budget left (the
 * other followers join that one), so a cancelled request costs its followers at most a lease
 * TTL, never a hang. A follower whose leader's value is not vouched for (see Outcome) joins or
 * leads a newer flight, whose requests are sent after it began: the followers that were
 * refused together share one new read instead of each reading alone.
 */
export async function coalesce<T>(plan: FlightPlan<T>): Promise<CacheResult<T>> {
  const started = Date.now();
  // When this caller began, in the isolate's sequence: a request sent after it vouches for it
  // (writes acknowledged before the caller began had run in Redis by then).
  const startedAt = plan.registry.tick();
  let followed = false;
  for (;;) {
    const remaining = plan.waitBudget - (Date.now() - started);
    const running = plan.registry.join(plan.id);
    if (!running) {
      const flight = plan.registry.lead(plan.id, Date.now() + plan.leaseTtl);
      try {
        const result = await plan.lead(flight, Math.max(0, remaining));
        // A leader that vouched (or will, after its fill) settled or settles the flight itself;
        // anything else reaches its followers unvouched, and they read again.
        if (!flight.deferred) flight.settle({ ok: true, result });
        return result;
      } catch (error) {
        flight.settle({ ok: false, error });
        throw error;
      } finally {
        // A leader whose fill is still out keeps the flight open until the fill answers:
        // callers arriving meanwhile wait for it (its compare-and-set was sent before they
        // began, so it cannot vouch for them: they read again once it landed, one hit,
        // instead of finding the lease held and sleeping). Then later callers lead a flight
        // of their own.
        if (flight.deferred) flight.whenSettled(() => plan.registry.finish(plan.id, flight));
        else plan.registry.finish(plan.id, flight);
      }
    }
    if (remaining <= 0) return plan.giveUp(Date.now() - started);
    if (!followed) plan.onFollow();
    followed = true;
    // Joined after the leader's request went out: a check riding on another read can vouch.
    plan.registry.checks.want(running, startedAt, () => plan.checkSpec());
    const outcome = await running.wait(started + plan.waitBudget, startedAt);
    if (outcome?.ok) {
      const { result, vouchedAt } = outcome;
      // A fail-safe value is served because the source failed, not as fresh data: as for the
      // leader, an old value beats an error.
      if ((vouchedAt !== undefined && vouchedAt > startedAt) || result.failSafe) {
        return own(result as CacheResult<T>);
      }
      if (running.checkVouches(outcome, startedAt)) {
        plan.onChecked();
        return own(result as CacheResult<T>);
      }
      continue; // not vouched for: a newer flight (led by one of the refused) will be
    }
    if (outcome) throw outcome.error;
    // null: the budget is spent (giveUp next turn) or the leader is gone (lead next turn).
  }
}
