import { BoundedMap } from "../bounded-map";
import type { CacheResult } from "../types";

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
  | { ok: true; result: CacheResult<unknown>; vouchedAt?: number }
  | { ok: false; error: unknown };

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
  sending(expectMs = this.#registry.roundTripMs): number {
    this.#expectAt = Date.now() + expectMs;
    return this.#registry.tick();
  }
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

  /** Ms until a follower looks again: at the expected answer, then every ms for a while. */
  #nextLook(now: number): number {
    const expected = this.#expectAt;
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
      if (this.#outcome) return this.#outcome;
      const offered = this.#offered;
      if (offered?.ok && offered.vouchedAt !== undefined && offered.vouchedAt > startedAt) {
        return offered;
      }
      // Re-read the deadline each time: the leader moves it as it goes.
      const now = Date.now();
      const left = Math.min(until, this.#deadline + GRACE_MS) - now;
      if (left <= 0) return null;
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.#nextLook(now), left)));
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
    const outcome = await running.wait(started + plan.waitBudget, startedAt);
    if (outcome?.ok) {
      const { result, vouchedAt } = outcome;
      // A fail-safe value is served because the source failed, not as fresh data: as for the
      // leader, an old value beats an error.
      if ((vouchedAt !== undefined && vouchedAt > startedAt) || result.failSafe) {
        return own(result as CacheResult<T>);
      }
      continue; // not vouched for: a newer flight (led by one of the refused) will be
    }
    if (outcome) throw outcome.error;
    // null: the budget is spent (giveUp next turn) or the leader is gone (lead next turn).
  }
}
