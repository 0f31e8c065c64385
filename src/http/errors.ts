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

export function errorResponse(
  c: Context,
  status: ContentfulStatusCode,
  code: string,
  message: string,
  details?: unknown,
): Response {
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
