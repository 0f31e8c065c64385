/**
 * Deadlines and error normalisation for a Neon `Pool`, applied at the driver boundary so every
 * caller (drizzle queries, transactions, /health) gets them:
 *
 * - `connect()` settles within `connectTimeoutMs` (the driver's `connectionTimeoutMillis` tears
 *   the socket down; the race here is the guarantee). A client that connects after the caller
 *   gave up is released with an error, so the pool destroys it instead of keeping it.
 * - every `client.query()` settles within `queryTimeoutMs`. A query that times out leaves its
 *   connection in an unknown state (the server may still answer later), so the client is
 *   released with an error at once (the pool ends it) and later calls on it, such as the
 *   ROLLBACK drizzle sends next, fail immediately instead of waiting for another deadline.
 * - `pool.query()` is connect + query + release through the guarded methods above.
 * - connection failures (including the WebSocket `ErrorEvent`s the driver rejects with, which
 *   are not `Error`s) become `DatabaseUnavailableError`; SQL errors pass through unchanged.
 */
import type { Pool, PoolClient } from "@neondatabase/serverless";
import { throughBreaker } from "./breaker";
import { DatabaseUnavailableError, describeThrown, isUnavailable } from "./errors";

export interface Deadlines {
  /** Opening a connection (WebSocket + Postgres startup), ms. */
  connectTimeoutMs: number;
  /** One statement, from send to result, ms. */
  queryTimeoutMs: number;
  /**
   * After a connect fails, how long later connects to the same database in this isolate fail at
   * once instead of waiting out their own deadline (src/db/breaker.ts); 0 = off. Default 0 here;
   * the Worker passes DB_BREAKER_MS.
   */
  breakerMs?: number;
}

class Timeout extends Error {}

/**
 * `promise`, or a `Timeout` ("<what>: no answer within <ms> ms") after `ms`; `onLate` receives
 * the promise when the deadline won. The timer is cleared when the promise settles first.
 *
 * @example
 * await withDeadline(db.execute(sql`select 1`), 3000, "health postgres");
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  onLate?: (late: Promise<T>) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      onLate?.(promise);
      reject(new Timeout(`${what}: no answer within ${ms} ms`));
    }, ms);
    promise.then(
      (value) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

type QueryFn = (...args: unknown[]) => Promise<unknown>;

/** A pooled client's own `query`, saved the first time it is checked out (pools reuse clients). */
const originalQuery = new WeakMap<PoolClient, QueryFn>();

/**
 * Puts the deadline on `client.query` for this checkout. The pool hands the same client out
 * again after a release, so the driver's `query` is saved once (never a wrapper of the previous
 * checkout's wrapper); `release` is read fresh, since pg-pool assigns a new one per checkout.
 */
function guardClient(client: PoolClient, deadlines: Deadlines): PoolClient {
  let query = originalQuery.get(client);
  if (!query) {
    query = client.query.bind(client) as QueryFn;
    originalQuery.set(client, query);
    // pg-pool removes its own 'error' listener while a client is checked out, and an 'error'
    // without a listener is thrown at top level. A socket failure already rejects the query in
    // flight (and makes the next one fail as "not queryable"), which is where it is reported;
    // errors of idle clients reach the pool's listener (createDb logs them).
    client.on("error", () => {});
  }
  const release = client.release.bind(client) as (err?: Error | boolean) => void;
  const run = query;
  let broken: DatabaseUnavailableError | undefined;
  let released = false;
  const releaseOnce = (err?: Error | boolean) => {
    if (released) return;
    released = true;
    release(err);
  };
  const guardedQuery: QueryFn = async (...args) => {
    if (typeof args.at(-1) === "function") return run(...args); // callback form: untouched
    if (broken) throw broken;
    try {
      return await withDeadline(run(...args), deadlines.queryTimeoutMs, "query");
    } catch (error) {
      if (error instanceof Timeout) {
        broken = new DatabaseUnavailableError("query", error.message, { cause: error });
        releaseOnce(broken);
        throw broken;
      }
      if (isUnavailable(error)) {
        broken = new DatabaseUnavailableError("query", describeThrown(error), { cause: error });
        throw broken;
      }
      throw error;
    }
  };
  Object.assign(client, {
    query: guardedQuery,
    release: (err?: Error | boolean) => releaseOnce(err ?? broken),
  });
  return client;
}

/**
 * Installs the deadlines on `pool` (in place) and returns it. `target` names the database for
 * the connect breaker (connects to one target share one circuit per isolate).
 *
 * @example
 * const pool = guardPool(new Pool({ connectionString, connectionTimeoutMillis: 5000 }),
 *   { connectTimeoutMs: 5000, queryTimeoutMs: 5000 });
 * await pool.query("select 1"); // DatabaseUnavailableError after 5 s if Postgres hangs
 */
export function guardPool(pool: Pool, deadlines: Deadlines, target = ""): Pool {
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => Promise<PoolClient>;
  const guardedConnect = async (...args: unknown[]): Promise<PoolClient> => {
    // The callback form is what pg-pool uses internally; only the promise form is ours.
    if (typeof args[0] === "function") return connect(...args);
    let client: PoolClient;
    try {
      client = await throughBreaker(target, deadlines.breakerMs ?? 0, () =>
        withDeadline(connect(), deadlines.connectTimeoutMs, "connect", (late) => {
          late.then((c) => c.release(true)).catch(() => {});
        }),
      );
    } catch (error) {
      // Every failure to get a connection means the database cannot be used now, whatever the
      // driver rejected with (an Error, a WebSocket ErrorEvent, a timeout).
      throw new DatabaseUnavailableError("connect", describeThrown(error), { cause: error });
    }
    return guardClient(client, deadlines);
  };
  const poolQuery = pool.query.bind(pool) as QueryFn;
  const guardedPoolQuery: QueryFn = async (...args) => {
    if (typeof args.at(-1) === "function") return poolQuery(...args); // callback form: untouched
    const client = await guardedConnect();
    try {
      return await (client.query as QueryFn)(...args);
    } finally {
      // A client the guard found broken is released with its error (the pool ends it); after a
      // plain SQL error the connection is fine and goes back to the pool.
      client.release();
    }
  };
  Object.assign(pool, { connect: guardedConnect, query: guardedPoolQuery });
  return pool;
}
