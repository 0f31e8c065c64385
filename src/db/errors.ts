/**
 * Postgres failures that mean "the database cannot be used right now" (as opposed to "this
 * statement is wrong"), so the HTTP layer can answer 503 + Retry-After instead of 500.
 *
 * The Neon driver does not always reject with an `Error`: a WebSocket that fails to open
 * rejects `pool.connect()` with the socket's `ErrorEvent`. Frameworks that only handle
 * `instanceof Error` (Hono's `onError`, vitest) then let it escape, which is how a stopped
 * Postgres used to become a `500 text/plain` with a stack trace. `createDb` wraps every
 * connect and query failure of that kind in this class at the driver boundary.
 */
export class DatabaseUnavailableError extends Error {
  constructor(
    /** What failed, for logs: "connect", "query". */
    readonly phase: "connect" | "query",
    /** Server-side detail (driver text, addresses): log it, never send it to a client. */
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`Postgres ${phase} failed: ${detail}`, options);
    this.name = "DatabaseUnavailableError";
  }
}

/** The readable text of anything thrown: Error, ErrorEvent, string, object with a message. */
export function describeThrown(thrown: unknown): string {
  if (thrown instanceof Error) return thrown.message;
  if (typeof thrown === "object" && thrown !== null) {
    const inner = (thrown as { error?: unknown }).error;
    if (inner instanceof Error) return inner.message;
    const message = (thrown as { message?: unknown }).message;
    if (typeof message === "string" && message) return message;
    const type = (thrown as { type?: unknown }).type;
    if (typeof type === "string") return `${type} event`;
  }
  return String(thrown);
}

// SQLSTATE classes and codes that say the server cannot serve us now, not that the query is bad:
// 08 connection exception, 53 insufficient resources (too many connections, out of memory),
// 57P01-57P05 shutdown / cannot connect now / idle-session timeout.
const UNAVAILABLE_STATES = /^(08|53)...$|^57P0[1-5]$/;

// Driver messages of a connection that broke or never answered (pg's and our own deadline's).
const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|not queryable|WebSocket|ECONNREFUSED|ECONNRESET|socket hang up|no answer within/i;

/**
 * Whether a failure of a query on an open connection means the database is unavailable.
 * Walks `cause` chains (drizzle wraps driver errors in "Failed query: …").
 */
export function isUnavailable(thrown: unknown): boolean {
  let current: unknown = thrown;
  for (let depth = 0; current !== undefined && current !== null && depth < 6; depth++) {
    if (current instanceof DatabaseUnavailableError) return true;
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) {
      return UNAVAILABLE_STATES.test(code);
    }
    if (!(current instanceof Error)) return true; // an Event or a bare value: the transport broke
    if (UNAVAILABLE_MESSAGES.test(current.message) && current.cause === undefined) return true;
    current = current.cause;
  }
  return false;
}

// SQLSTATE of a statement naming a column or table the database does not have: 42703
// undefined_column, 42P01 undefined_table. From this code's own statements (drizzle names every
// column of the schema in an INSERT and in select()), that means the database is behind the
// release: its migration has not run yet.
const SCHEMA_BEHIND_STATES = new Set(["42703", "42P01"]);

/**
 * The Postgres error saying the schema lacks a column or table this release uses, anywhere in
 * `thrown`'s cause chain (drizzle wraps driver errors in "Failed query: …"), or undefined.
 * During a deploy the new release can run before its migration (README "Deploy"): its writes
 * then fail on the outbox INSERT, and the HTTP layer answers 503 (retry once the migration ran)
 * instead of 500.
 *
 * @example
 * schemaBehind(new Error("Failed query", { cause: { code: "42703", message: "column …" } }));
 */
export function schemaBehind(thrown: unknown): { code: string; message: string } | undefined {
  let current: unknown = thrown;
  for (let depth = 0; current !== undefined && current !== null && depth < 6; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && SCHEMA_BEHIND_STATES.has(code)) {
      return { code, message: describeThrown(current) };
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
