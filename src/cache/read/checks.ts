import type { EngineContext } from "../context";
import type { Flight, LeaseCheck } from "./flight";
import { type HitRead, readHit } from "./hit";
import type { ReadReply } from "./reply";

/**
 * Checks: vouching for a hot key's late readers without a request of their own.
 *
 * A reader that joins a flight after the leader's read (or fill) went out cannot take its
 * value on that request's word: the request may have run in Redis before the reader began, and
 * so before a write acknowledged to it (read/flight.ts, Outcome). Until now such a reader
 * waited for that answer and then for one more read of the key, sent after it began: ~1.5
 * round trips, the mixed workload's read tail (bench/results/profile-notes.md, session 11).
 *
 * Instead it queues a check of the entry, and the next strict hit read this isolate sends for
 * any key of the same prefix carries it (hit.lua's ARGV[4..5], the check's keys declared in
 * KEYS like the read's own). The check answers the fill id of the entry when it is fresh and
 * valid at that moment (version key, tag counters), else false. When the flight's value comes
 * from that very fill (same id: fill ids are unique per fill, `ct` is not), the value is the
 * entry the check found valid after the reader began, so every write acknowledged before the
 * reader began had run by then and would have deleted, bumped or replaced it: the reader takes
 * the value, ~1 round trip after it joined, and the next read of the key is not sent at all.
 *
 * A check rides only on a strict read (a replica may lag) of the same prefix (the flight
 * registry already assumes one prefix is one database); at most `MAX_PER_READ` ride on one
 * read. When no read comes, or the check says no, the reader reads again as before.
 */

/** The keys a check declares: the same as the entry's own hit read would (`hitDeclares`). */
export interface CheckSpec {
  prefix: string;
  key: string;
  versionKey?: string;
  /** Declared tags, as a hit read of the key would declare them (own, then learned). */
  tags: readonly string[];
  /** How many of `tags` are the reader's own (HitRead.own; default 0). */
  own?: number;
  /**
   * A lease check instead of an entry check (set as the carrier sends it, Flight.checkSent):
   * the lease key, the version key and the counters of `lease.tags` are compared instead.
   */
  lease?: LeaseCheck;
}

/** At most this many checks ride on one read: each adds its entry's keys to the script. */
export const MAX_PER_READ = 4;
/** Queued checks kept per isolate (oldest dropped first): they only matter for a round trip. */
const MAX_QUEUED = 256;
/** What `take` answers when nothing is queued (every hit read asks): no array made per read. */
const NONE: ReadonlyArray<[Flight, CheckSpec]> = [];

/**
 * The isolate's queue of checks to carry (one per flight), kept by its FlightRegistry.
 *
 * @example
 *   registry.checks.want(flight, startedAt, () => ({ prefix: "ec", key: "p:1", tags: [] }));
 *   registry.checks.take("ec", MAX_PER_READ); // [[flight, spec]]
 */
export class CheckQueue {
  readonly #queue = new Map<Flight, CheckSpec>();

  /** A follower that began at `startedAt` joined `flight`: queue a check if it wants one. */
  want(flight: Flight, startedAt: number, spec: () => CheckSpec | undefined): void {
    if (!flight.wantsCheck(startedAt) || this.#queue.has(flight)) return;
    const wanted = spec();
    if (!wanted) return;
    if (this.#queue.size >= MAX_QUEUED) {
      const oldest = this.#queue.keys().next().value;
      if (oldest) this.#queue.delete(oldest);
    }
    this.#queue.set(flight, wanted);
  }

  /** Up to `max` checks of `prefix` still worth sending; dequeues them (and stale ones). */
  take(prefix: string, max: number): ReadonlyArray<[Flight, CheckSpec]> {
    if (this.#queue.size === 0) return NONE;
    const out: Array<[Flight, CheckSpec]> = [];
    for (const [flight, spec] of this.#queue) {
      if (!flight.needsCheck) {
        this.#queue.delete(flight);
      } else if (spec.prefix === prefix) {
        this.#queue.delete(flight);
        out.push([flight, spec]);
        if (out.length >= max) break;
      }
    }
    return out;
  }
}

/**
 * A strict hit read of `key` that carries the checks queued for its prefix, and hands each
 * flight its answer (a failed read answers none: its followers read again).
 *
 * @example
 *   const reply = await readCarrying(ctx, "product:1", { tags: [], replica: false });
 */
export function readCarrying(ctx: EngineContext, key: string, what: HitRead): Promise<ReadReply> {
  const taken = ctx.flights.checks.take(ctx.keys.prefix, MAX_PER_READ);
  // Nearly always none: the hit read as it is, without another async layer around it.
  if (taken.length === 0) return readHit(ctx.target, key, what);
  return carry(ctx, key, what, taken);
}

async function carry(
  ctx: EngineContext,
  key: string,
  what: HitRead,
  taken: ReadonlyArray<[Flight, CheckSpec]>,
): Promise<ReadReply> {
  // Ticked right before the read goes out: it vouches for followers that began before this.
  const seq = ctx.flights.tick();
  // Each flight says now whether its leader is loading under a lease (a lease check) or not.
  const checks = taken.map(([flight, spec]) => {
    const lease = flight.checkSent(seq);
    return lease ? { ...spec, lease } : spec;
  });
  ctx.pending.add("checks", taken.length);
  let reply: ReadReply;
  try {
    reply = await readHit(ctx.target, key, { ...what, checks });
  } catch (error) {
    for (const [flight] of taken) flight.checked(seq, null);
    throw error;
  }
  taken.forEach(([flight], i) => {
    const answer = reply.ck?.[i];
    flight.checked(seq, typeof answer === "string" || answer === true ? answer : null);
  });
  return reply;
}
