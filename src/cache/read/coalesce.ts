import { BoundedMap } from "../bounded-map";
import type { CacheResult } from "../types";
import { CheckQueue, type CheckSpec } from "./checks";

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

/**
 * What a flight hands its followers: plain data only.
 *
 * `vouchedAt` is the registry sequence number taken just before the leader sent the Redis
 * request that vouches for the value: the read that answered HIT or STALE, or the fill whose
 * compare-and-set on lease, version and tags succeeded; or just before its loader began to
 * read the source (`Flight.offer`), which vouches for followers that began before that. A
 * follower may take the value only when
 * that request was sent after it began (`vouchedAt > startedAt`, the registry sequence taken
 * when its `getOrLoad` began): then every write acknowledged before the follower's request began
 * had already run in Redis when the request did, and would have turned the HIT into a MISS or
 * refused the fill. Without that rule a request that starts
 * after an acknowledged write could be handed a value loaded before it (the bench's race
 * workload caught exactly that). Absent (a BYPASS, a value not cached, a refused fill): nothing
 * vouches for it, and followers read for themselves.
 */
export type Outcome =
  | {
      ok: true;
      result: CacheResult<unknown>;
      vouchedAt?: number;
      /**
       * The fill id of the entry the value came from (a HIT's reply, or the leader's own fill):
       * a check that found that very entry valid after a follower began vouches for it too
       * (read/checks.ts).
       */
      id?: string;
    }
  | { ok: false; error: unknown };

/** One check of a flight's entry, riding on another read (read/checks.ts). */
interface Check {
  /** The sequence number ticked just before the read carrying it was sent. */
  seq: number;
  /** When it was sent (local ms). */
  sentAt: number;
  /** The entry's fill id when it was fresh and valid; null: not; undefined: not answered yet. */
  id: string | null | undefined;
}

/** Checks remembered per flight (a flight lives about one round trip: a few at most). */
const MAX_CHECKS_KEPT = 8;

/** How often a follower looks at the flight (an in-memory check, no I/O) when nothing is due. */
const POLL_MS = 5;
/**
 * Around the time the leader expects its answer (see Flight.sending), a follower looks every
 * millisecond, for this long: a follower looking every 5 ms came ~2.5 ms late on average, twice
 * on the way of a hot key's late reader (bench/results/profile-notes.md, session 11).
 */
const EXPECTED_WINDOW_MS = 5;
/**
 * The longest a follower sleeps towards the expected answer: an estimate can be long (a load's)
 * while the answer comes early, and the leader may be gone (its deadline is re-read each look).
 */
const MAX_SLEEP_MS = 20;
/** Past its deadline a leader counts as gone (its request was cancelled or it hangs). */
const GRACE_MS = 25;
/** Dead flights are swept when the registry grows past this (they are rare: cancelled leaders). */
const SWEEP_AT = 256;
/** Per-key load times kept per isolate (oldest dropped first). */
const REMEMBERED_KEYS = 1000;

/** One load in flight in this isolate: a leader, and followers waiting on its outcome. */
export class Flight {
  #deadline: number;
  #outcome: Outcome | undefined;
  #deferred = false;
  readonly #registry: FlightRegistry;

  constructor(deadline: number, registry: FlightRegistry) {
    this.#deadline = deadline;
    this.#registry = registry;
  }

  /**
   * Called by the leader right before it sends a Redis request that may vouch for the value:
   * the sequence number to settle with (see Outcome). `expectMs` is how soon it expects the
   * answer (default: the isolate's average read round trip; a load passes its estimate), which
   * is when followers look.
   */
  sending(expectMs = this.#registry.roundTripMs, checkable = true): number {
    this.#sentAt = Date.now();
    this.#expectAt = this.#sentAt + expectMs;
    this.#sent = this.#registry.tick();
    this.#checkable = checkable;
    return this.#sent;
  }
  /** The sequence number of the leader's last request, and whether a check can stand in for it. */
  #sent: number | undefined;
  #sentAt = 0;
  #checkable = false;
  /** How long the leader's last request took to answer (ms), once it did. */
  #answeredIn: number | undefined;
  /** When the leader expects the answer of what it sent last (local ms); followers look then. */
  #expectAt: number | undefined;

  /**
   * The leader settles later (its fill runs after its response, in `waitUntil`): returning from
   * the lead does not settle the flight; the fill's answer will, within `ms`.
   */
  settleLater(ms: number): void {
    this.#deferred = true;
    this.#deadline = Date.now() + ms;
  }

  /** Whether the leader promised to settle after returning (settleLater). */
  get deferred(): boolean {
    return this.#deferred;
  }

  /** Still worth waiting for: not settled and not past its deadline. */
  alive(now = Date.now()): boolean {
    return this.#outcome === undefined && now <= this.#deadline + GRACE_MS;
  }

  /** The leader moves its deadline as it goes (waiting on another isolate, loading). */
  busyUntil(deadline: number): void {
    this.#deadline = deadline;
  }

  /** Called by the leader, in its own request: records the outcome (plain data). */
  settle(outcome: Outcome): void {
    // (A leader that failed before sending anything has no round trip to measure.)
    if (!this.#outcome && this.#sentAt > 0) this.#answeredIn = Date.now() - this.#sentAt;
    this.#outcome ??= outcome;
    this.#onSettled?.();
    this.#onSettled = undefined;
  }

  /** Runs `done` (plain bookkeeping, no I/O) once the flight is settled. */
  whenSettled(done: () => void): void {
    if (this.#outcome) done();
    else this.#onSettled = done;
  }
  #onSettled: (() => void) | undefined;

  /**
   * Called by the leader when its load ends, before its fill: the value, vouched for by the
   * load's start (`vouchedAt` ticked just before the loader ran). For a follower that began
   * before that tick, the loader read the source after the follower began, so the value is at
   * least as new as any write acknowledged before the follower's request: it may take it now. Later followers wait for
   * the fill's compare-and-set (`settle`).
   */
  offer(outcome: Outcome & { ok: true }): void {
    this.#offered ??= outcome;
  }
  #offered: Outcome | undefined;

  /**
   * A follower that began at `startedAt` joins: whether it wants a check (read/checks.ts). It
   * does when the leader's last request, a read or a fill, went out before it began, so its
   * answer cannot vouch for this follower; a check sent on another read after it began can.
   * Not when the leader is loading (the entry is being replaced) or a check sent after it
   * began is queued already.
   */
  wantsCheck(startedAt: number): boolean {
    if (this.#outcome || this.#sent === undefined || this.#sent > startedAt || !this.#checkable) {
      return false;
    }
    if (startedAt > this.#wantedAfter) this.#wantedAfter = startedAt;
    return this.needsCheck;
  }
  /** The latest `startedAt` of a follower that wanted a check, and the latest check's seq. */
  #wantedAfter = 0;
  #lastCheck = 0;
  #checks: Check[] = [];

  /** Whether a check sent now would still help: followers wait on it and the leader has not settled. */
  get needsCheck(): boolean {
    return this.#outcome === undefined && this.#wantedAfter > this.#lastCheck;
  }

  /** The carrier of a check ticked `seq` and sends it now. */
  checkSent(seq: number): void {
    this.#lastCheck = seq;
    if (this.#checks.length >= MAX_CHECKS_KEPT) this.#checks.shift();
    this.#checks.push({ seq, sentAt: Date.now(), id: undefined });
  }

  /** The carrier's answer for the check it sent at `seq`: the fill id found valid, or null. */
  checked(seq: number, id: string | null): void {
    for (const check of this.#checks) if (check.seq === seq) check.id = id;
  }

  /**
   * Whether a check vouches for `outcome` to a follower that began at `startedAt`: one sent
   * after it began found the very entry the value came from (same fill id) fresh and valid.
   * Then every write acknowledged before the follower began had run when the check did, and
   * would have bumped what the check compared, deleted the entry or replaced it (a new id).
   */
  checkVouches(outcome: Outcome, startedAt: number): boolean {
    if (!outcome.ok || !outcome.id) return false;
    for (const check of this.#checks) {
      if (check.seq > startedAt && check.id === outcome.id) return true;
    }
    return false;
  }

  /**
   * When the answer of a check that could vouch for a follower that began at `startedAt` is
   * expected, while one is out and not overdue; else undefined.
   */
  #checkPending(startedAt: number, now: number): number | undefined {
    // A check should take about what the leader's request took (a latency spike slows both),
    // and at least the isolate's usual round trip: expected then, given up on at twice that
    // (its carrier's request was cancelled: a read of the follower's own comes next).
    const expectMs = Math.max(this.#registry.roundTripMs, this.#answeredIn ?? 0);
    for (const check of this.#checks) {
      if (check.seq > startedAt && check.id === undefined) {
        if (now < check.sentAt + 2 * expectMs + POLL_MS) return check.sentAt + expectMs;
      }
    }
    return undefined;
  }

  /** Ms until a follower looks again: at the expected answer, then every ms for a while. */
  #nextLook(now: number, expected = this.#expectAt): number {
    if (expected === undefined) return POLL_MS;
    const until = expected - now;
    if (until >= 1) return Math.min(until, MAX_SLEEP_MS);
    return until > -EXPECTED_WINDOW_MS ? 1 : POLL_MS;
  }

  /**
   * Called by a follower, in its own request: the outcome, or null once `until` passes or the
   * leader is overdue. The follower looks at the flight's plain state on its own timer (when the
   * leader expects its answer, then every ms for a while, else every 5 ms); nothing the leader
   * created or resolves is awaited across requests.
   */
  async wait(until: number, startedAt = Number.POSITIVE_INFINITY): Promise<Outcome | null> {
    for (;;) {
      const now = Date.now();
      const outcome = this.#outcome;
      // An outcome that does not vouch for this follower is worth waiting past only while a
      // check that could is out (read/checks.ts): its answer is due about now.
      let expected = this.#expectAt;
      if (outcome) {
        // Only an entry's value (it has a fill id) that nothing else vouches for can use one;
        // an error or a fail-safe answer goes to the follower at once.
        const checkable =
          outcome.ok &&
          outcome.id !== undefined &&
          !outcome.result.failSafe &&
          (outcome.vouchedAt ?? 0) <= startedAt;
        const pending = checkable ? this.#checkPending(startedAt, now) : undefined;
        if (pending === undefined || this.checkVouches(outcome, startedAt)) return outcome;
        expected = pending;
      }
      const offered = this.#offered;
      if (offered?.ok && offered.vouchedAt !== undefined && offered.vouchedAt > startedAt) {
        return offered;
      }
      // Re-read the deadline each time: the leader moves it as it goes.
      const left = Math.min(until, this.#deadline + GRACE_MS) - now;
      if (left <= 0) return null;
      const look = Math.min(this.#nextLook(now, expected), left);
      await new Promise((resolve) => setTimeout(resolve, look));
    }
  }
}

/**
 * The flights of one isolate, keyed by prefix, key and version key, plus what the isolate has
 * measured of load times (the estimate a lease holder announces to other isolates). Module
 * scope by default (`isolateFlights`); pass your own as `EdgeCacheOptions.flights` to keep two
 * engines apart (tests modelling isolates, two Redis databases under one prefix).
 *
 * @example
 * // Two engines in one process that must behave like two isolates (no shared loads):
 * const a = new EdgeCache({ redis, prefix: "ec", flights: new FlightRegistry() });
 * const b = new EdgeCache({ redis, prefix: "ec", flights: new FlightRegistry() });
 * // Engines built per request with the default share the isolate's flights:
 * const perRequest = new EdgeCache({ redis, prefix: "ec" }); // uses isolateFlights
 */
export class FlightRegistry {
  readonly #flights = new Map<string, Flight>();
  #seq = 0;
  /** Checks for late followers, waiting for a read to carry them (read/checks.ts). */
  readonly checks = new CheckQueue();

  /** Next number of the isolate's sequence: orders joins against the leader's requests. */
  tick(): number {
    this.#seq += 1;
    return this.#seq;
  }
  readonly #keyLoadMs = new BoundedMap<string, number>(REMEMBERED_KEYS);
  readonly #prefixLoadMs = new Map<string, number>();
  #roundTripMs = 0;

  /** A moving average of the isolate's read round trips (what a follower expects to wait). */
  get roundTripMs(): number {
    return this.#roundTripMs;
  }

  /** Records one read's round trip. */
  recordRoundTrip(ms: number): void {
    this.#roundTripMs = this.#roundTripMs === 0 ? ms : this.#roundTripMs * 0.9 + ms * 0.1;
  }

  /** The live flight for `id`, if any; a dead one (cancelled leader) is dropped. */
  join(id: string): Flight | undefined {
    const flight = this.#flights.get(id);
    if (flight?.alive()) return flight;
    if (flight) this.#flights.delete(id);
    return undefined;
  }

  /** Starts a flight for `id`; the caller leads it and must `finish` it. */
  lead(id: string, deadline: number): Flight {
    if (this.#flights.size >= SWEEP_AT) {
      for (const [other, flight] of this.#flights) if (!flight.alive()) this.#flights.delete(other);
    }
    const flight = new Flight(deadline, this);
    this.#flights.set(id, flight);
    return flight;
  }

  finish(id: string, flight: Flight): void {
    if (this.#flights.get(id) === flight) this.#flights.delete(id);
  }

  /** Remembers a measured load time: per key, and a moving average per prefix. */
  recordLoad(prefix: string, key: string, ms: number): void {
    const id = `${prefix}\u0000${key}`;
    this.#keyLoadMs.touch(id, ms);
    const avg = this.#prefixLoadMs.get(prefix);
    this.#prefixLoadMs.set(prefix, avg === undefined ? ms : avg * 0.8 + ms * 0.2);
  }

  /** This isolate's best guess of how long loading `key` takes, if it has one. */
  estimateLoad(prefix: string, key: string): number | undefined {
    return this.#keyLoadMs.get(`${prefix}\u0000${key}`) ?? this.#prefixLoadMs.get(prefix);
  }
}

/** The isolate's registry: module scope, shared by every engine built in this isolate. */
export const isolateFlights = new FlightRegistry();

/**
 * Loads that can share a result: same prefix, key and version key, and for replica reads the
 * same read-your-writes position (`view`, "" for strict reads).
 */
export function flightId(
  prefix: string,
  key: string,
  versionKey: string | undefined,
  view = "",
): string {
  return `${prefix}\u0000${key}\u0000${versionKey ?? ""}\u0000${view}`;
}

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
  try {
    return { ...result, value: structuredClone(result.value) };
  } catch {
    return { ...result }; // not cloneable (a function inside): shared as is, like before
  }
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
