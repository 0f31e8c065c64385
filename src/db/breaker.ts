/**
 * A per-isolate circuit breaker on opening Postgres connections.
 *
 * The loader backoff (src/cache/backoff.ts) stops one key from being reloaded while its source
 * fails, but a hung Postgres makes every *other* cold key wait out the full connect deadline
 * (5 s by default) too. After a connect to a database fails, the breaker is open for `openMs`:
 * new connects in this isolate fail at once with the same failure, instead of waiting for it
 * again. When the interval ends, one connect is let through as a probe (the others keep failing
 * fast while it runs); its success closes the breaker, its failure opens it again.
 *
 * Only connects trip it. A statement that times out (a lock held on one table) says nothing
 * about the rest of the database, so it is left to the per-statement deadline.
 *
 * State is module scope, keyed by the connection target: plain numbers and errors, no I/O
 * objects, so sharing it across the requests of an isolate is safe in workerd.
 */

interface Circuit {
  /** Until when (ms, this isolate's clock) connects fail fast. */
  openUntil: number;
  /** A probe connect is running: others keep failing fast until it settles. */
  probing: boolean;
  /** The failure that opened it, returned (as the cause) to every fast-failed connect. */
  failure: unknown;
}

const circuits = new Map<string, Circuit>();
/** Bounded like every isolate-scope map: one entry per database URL, a handful in practice. */
const MAX_CIRCUITS = 64;

export class CircuitOpenError extends Error {
  constructor(readonly failure: unknown) {
    super("connect skipped: a connect to this database failed moments ago (circuit open)", {
      cause: failure,
    });
    this.name = "CircuitOpenError";
  }
}

/**
 * Runs `connect` unless the circuit for `target` is open (then throws `CircuitOpenError`, whose
 * `cause` is the failure that opened it). `openMs` 0 turns the breaker off.
 *
 * @example
 * const client = await throughBreaker(databaseUrl, 2000, () => pool.connect());
 */
export async function throughBreaker<T>(
  target: string,
  openMs: number,
  connect: () => Promise<T>,
  now: () => number = Date.now,
): Promise<T> {
  if (openMs <= 0) return connect();
  const circuit = circuits.get(target);
  let probe = false;
  if (circuit) {
    if (circuit.probing || now() < circuit.openUntil) throw new CircuitOpenError(circuit.failure);
    circuit.probing = true;
    probe = true;
  }
  try {
    const value = await connect();
    if (probe) circuits.delete(target);
    return value;
  } catch (error) {
    if (circuits.size >= MAX_CIRCUITS && !circuits.has(target)) {
      const oldest = circuits.keys().next().value;
      if (oldest !== undefined) circuits.delete(oldest);
    }
    circuits.set(target, { openUntil: now() + openMs, probing: false, failure: error });
    throw error;
  }
}

/** Closes every circuit (tests). */
export function resetBreakers(): void {
  circuits.clear();
}
