import type { ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { ConfigError } from "../../config/env";
import { errorResponse, HttpError } from "../errors";

export const notFound: NotFoundHandler = (c) =>
  errorResponse(c, 404, "not_found", `No route for ${c.req.method} ${new URL(c.req.url).pathname}`);

/**
 * Maps every thrown error to the one JSON shape. Unknown errors are logged with their stack
 * and reported without internals: a client never sees a stack trace or a driver message.
 */
export const onError: ErrorHandler = (err, c) => {
  if (err instanceof HttpError)
    return errorResponse(c, err.status, err.code, err.message, err.details);
  if (err instanceof ConfigError) {
    console.error(err.message);
    return errorResponse(c, 500, "config_invalid", err.message, { problems: err.problems });
  }
  if (err instanceof HTTPException) {
    const status = err.status;
    const code =
      status === 401 ? "unauthorized" : status === 413 ? "payload_too_large" : "bad_request";
    return errorResponse(c, status, code, err.message || "Request rejected");
  }
  console.error("unhandled error", err);
  return errorResponse(c, 500, "internal_error", "Internal error; the request id is in the logs.");
};
