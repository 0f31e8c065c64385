import type { CacheResult } from "../types";

/**
 * One load in flight in an isolate: the leader's plain-data state that followers look at on
 * their own timers (coalesce.ts says why nothing else crosses requests), and the checks that
 * can vouch for late followers (checks.ts).
 */

/** What a flight needs of its registry (flights.ts): the isolate's sequence and round trip. */
export interface FlightClock {
  /** Next number of the isolate's sequence. */
  tick(): number;
  /** A moving average of the isolate's read round trips (ms). */
  readonly roundTripMs: number;
}

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

/**
 * What a lease check compares (read/checks.ts): the lease a load runs under and what the read
 * that granted it captured. Found unchanged after a follower began, it vouches for the load's
 * value to that follower (Flight.offer).
 */
export interface LeaseCheck {
  /** The lease value the grant answered (`tok`), which the fill compares whole. */
  tok: string;
  /** The version key's value when the lease was granted (`cv`), when the entry has one. */
  cv?: number;
  /** The entry's own tags, and their counters as the grant captured them, in order. */
  tags: readonly string[];
  tg: readonly string[];
}

/** One check of a flight's entry or lease, riding on another read (read/checks.ts). */
interface Check {
  /** The sequence number ticked just before the read carrying it was sent. */
  seq: number;
  /** When it was sent (local ms). */
  sentAt: number;
  /** A lease check: the lease value it compared; an entry check: undefined. */
  lease: string | undefined;
  /**
   * Entry check: the entry's fill id when it was fresh and valid. Lease check: true when the
   * lease, the version key and the own tags' counters were as granted. null: not; undefined:
   * not answered yet.
   */
  answer: string | true | null | undefined;
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

/** One load in flight in this isolate: a leader, and followers waiting on its outcome. */
export class Flight {
  #deadline: number;
  #outcome: Outcome | undefined;
  #deferred = false;
  readonly #registry: FlightClock;

  constructor(deadline: number, registry: FlightClock) {
    this.#deadline = deadline;
    this.#registry = registry;
  }

  /**
   * Called by the leader right before it sends a Redis request that may vouch for the value:
   * the sequence number to settle with (see Outcome). `expectMs` is how soon it expects the
   * answer (default: the isolate's average read round trip; a load passes its estimate), which
   * is when followers look.
   */
  sending(expectMs = this.#registry.roundTripMs, checkable = true, lease?: LeaseCheck): number {
    this.#sentAt = Date.now();
    this.#expectAt = this.#sentAt + expectMs;
    this.#sent = this.#registry.tick();
    this.#checkable = checkable;
    this.#lease = lease;
    return this.#sent;
  }
  /** The sequence number of the leader's last request, and whether a check can stand in for it. */
  #sent: number | undefined;
  #sentAt = 0;
  #checkable = false;
  /** While the leader loads under a lease a check can compare (read/load.ts): what to compare. */
  #lease: LeaseCheck | undefined;
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
   * least as new as any write acknowledged before the follower's request: it may take it now.
   * Later followers take it on a lease check of `lease` (the lease the load ran under) sent
   * after they began (#leaseVouches), or wait for the fill's compare-and-set (`settle`).
   */
  offer(outcome: Outcome & { ok: true }, lease?: string): void {
    // A reload's offer (read/load.ts) replaces the first load's: it vouches for more followers.
    if ((outcome.vouchedAt ?? 0) > ((this.#offered?.ok && this.#offered.vouchedAt) || 0)) {
      this.#offered = outcome;
      this.#offeredLease = lease;
    }
  }
  #offered: Outcome | undefined;
  /** The lease value the offered load ran under, when a lease check can vouch for it. */
  #offeredLease: string | undefined;

  /** How many followers are waiting on this flight right now (a refused fill reloads for them). */
  get waiting(): number {
    return this.#waiting;
  }
  #waiting = 0;

  /**
   * A follower that began at `startedAt` joins: whether it wants a check (read/checks.ts). It
   * does when the leader's last request, a read, a fill or the start of a load, went out
   * before it began, so it cannot vouch for this follower; a check sent on another read after
   * it began can. Not when the leader loads without a lease a check can compare (the entry is
   * being replaced), or a check sent after it began is queued already.
   */
  wantsCheck(startedAt: number): boolean {
    if (this.#outcome || this.#sent === undefined || this.#sent > startedAt) return false;
    if (!this.#checkable && !this.#lease) return false;
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

  /**
   * The carrier of a check ticked `seq` and sends it now: what it compares is decided now, by
   * what the leader is doing. While it loads under a lease, the lease (returned: the carrier
   * declares its keys); else the entry (undefined).
   */
  checkSent(seq: number): LeaseCheck | undefined {
    this.#lastCheck = seq;
    if (this.#checks.length >= MAX_CHECKS_KEPT) this.#checks.shift();
    const lease = this.#lease;
    this.#checks.push({ seq, sentAt: Date.now(), lease: lease?.tok, answer: undefined });
    return lease;
  }

  /**
   * The carrier's answer for the check it sent at `seq`: an entry check's fill id found valid,
   * a lease check's true, or null.
   */
  checked(seq: number, answer: string | true | null): void {
    for (const check of this.#checks) if (check.seq === seq) check.answer = answer;
  }

  /**
   * Whether a check vouches for `outcome` to a follower that began at `startedAt`: one sent
   * after it began found the very entry the value came from (same fill id) fresh and valid.
   * Then every write acknowledged before the follower began had run when the check did, and
   * would have bumped what the check compared, deleted the entry or replaced it (a new id).
   */
  checkVouches(outcome: Outcome, startedAt: number): boolean {
    if (outcome === this.#offered) return this.#leaseVouches(startedAt);
    if (!outcome.ok || !outcome.id) return false;
    for (const check of this.#checks) {
      if (check.seq > startedAt && check.lease === undefined && check.answer === outcome.id) {
        return true;
      }
    }
    return false;
  }

  /**
   * Whether a lease check vouches for the offered load's value to a follower that began at
   * `startedAt`: one sent after it began found the lease that load runs under still held, and
   * the version key and own tags as the grant captured them. Every write acknowledged before
   * the follower began had run in Redis by then; one that ran after the grant would have
   * deleted the lease (or bumped what the check compared), so it ran before the grant, and
   * the load, which began after the grant, read the source after it.
   */
  #leaseVouches(startedAt: number): boolean {
    const lease = this.#offeredLease;
    if (lease === undefined) return false;
    for (const check of this.#checks) {
      if (check.seq > startedAt && check.lease === lease && check.answer === true) return true;
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
      if (check.seq > startedAt && check.answer === undefined) {
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
    this.#waiting += 1;
    try {
      return await this.#look(until, startedAt);
    } finally {
      this.#waiting -= 1;
    }
  }

  async #look(until: number, startedAt: number): Promise<Outcome | null> {
    for (;;) {
      const now = Date.now();
      const outcome = this.#outcome;
      let expected = this.#expectAt;
      // A load's value, vouched for by the load's start or by a lease check (see offer).
      const offered = this.#offered;
      if (offered?.ok && offered.vouchedAt !== undefined) {
        if (offered.vouchedAt > startedAt || this.#leaseVouches(startedAt)) return offered;
      }
      // An outcome that does not vouch for this follower is worth waiting past only while a
      // check that could is out (read/checks.ts): its answer is due about now.
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
      } else if (offered) {
        // The load is done and its fill is out: a lease check sent after this follower began
        // may answer before the fill does.
        const pending = this.#checkPending(startedAt, now);
        if (pending !== undefined && (expected === undefined || pending < expected)) {
          expected = pending;
        }
      }
      // Re-read the deadline each time: the leader moves it as it goes.
      const left = Math.min(until, this.#deadline + GRACE_MS) - now;
      if (left <= 0) return null;
      const look = Math.min(this.#nextLook(now, expected), left);
      await new Promise((resolve) => setTimeout(resolve, look));
    }
  }
}
