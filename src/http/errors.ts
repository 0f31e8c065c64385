import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { describeThrown } from "../db/errors";

/** The one error shape every route returns: `{ "error": { code, message, details? } }`. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    details?: unknown;
  };
}

export class HttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return details === undefined
    ? { error: { code, message } }
    : { error: { code, message, details } };
}

/**
 * An error in the one shape, never stored by any cache: 404 and 405 are cacheable by default
 * (RFC 9111 heuristics), and a 404 must not outlive the create that ends it.
 */
export function errorResponse(
  c: Context,
  status: ContentfulStatusCode,
  code: string,
  message: string,
  details?: unknown,
): Response {
  c.header("Cache-Control", "no-store");
  return c.json(errorBody(code, message, details), status);
}

/**
 * Anything thrown, as an Error. Hono's compose hands only `instanceof Error` to `onError` and
 * rethrows the rest out of `app.fetch` (an uncaught rejection: workerd's `500 text/plain`), so
 * the outermost middleware (`catchAll` in middleware/errors.ts) passes every throw through this.
 * The original value stays reachable as `cause`.
 */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(`non-Error thrown: ${describeThrown(thrown)}`, { cause: thrown });
}

/**
 * The first value of class `type` in `thrown`'s cause chain (`thrown` itself included), if any.
 * Driver failures arrive wrapped (drizzle's "Failed query", the cache's LoaderBackoffError), so
 * the error handler looks down the chain; the depth bound guards against a cyclic `cause`.
 *
 * @example
 * findCause(new Error("Failed query", { cause: dbDown }), DatabaseUnavailableError); // dbDown
 */
export function findCause<T>(
  thrown: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: any constructor signature; only instanceof is used
  type: abstract new (...args: any[]) => T,
): T | undefined {
  let current: unknown = thrown;
  for (let depth = 0; current !== undefined && current !== null && depth < 6; depth++) {
    if (current instanceof type) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
