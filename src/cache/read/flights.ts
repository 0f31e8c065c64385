import { BoundedMap } from "../bounded-map";
import { CheckQueue } from "./checks";
import { Flight } from "./flight";

/** Per-key load times kept per isolate (oldest dropped first). */
const REMEMBERED_KEYS = 1000;

/** Prefixes whose average load time is kept (oldest first out). */
const REMEMBERED_PREFIXES = 256;

/** Dead flights are swept when the registry grows past this (they are rare: cancelled leaders). */
const SWEEP_AT = 256;

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
  /** Bounded too: an app may give each tenant its own prefix. */
  readonly #prefixLoadMs = new BoundedMap<string, number>(REMEMBERED_PREFIXES);
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
 * Loads that can share a result: same prefix, key and version key, the same own tags, and the
 * same view: "" for strict reads, `r:` and the read-your-writes position for replica reads
 * (never "": a replica read without a position must not share with strict reads).
 *
 * The own tags are part of it because what vouches for a follower (the leader's read, a lease
 * check, the fill's compare-and-set, a check queued by the first follower) tests the tags that
 * request declared: a caller whose own tags include one the leader's do not could be handed a
 * value a bump of that tag, acknowledged before it began, should have invalidated (found by a
 * race audit). Readers of one key with one tag list, the usual case, still share.
 */
export function flightId(
  prefix: string,
  key: string,
  versionKey: string | undefined,
  view = "",
  ownTags: readonly string[] = [],
): string {
  // Names hold no control characters (assertName), so \u0000 cannot occur inside one.
  const tags =
    ownTags.length === 0 ? "" : ownTags.length === 1 ? ownTags[0] : ownTags.join("\u0000");
  return `${prefix}\u0000${key}\u0000${versionKey ?? ""}\u0000${view}\u0000${tags}`;
}
