import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";

/**
 * RFC 9110 §5.6.6 allows whitespace before a media type's `;` (`application/json ; charset=utf-8`),
 * which @hono/zod-openapi's media-type gate does not: such a JSON body was a 415. The header is
 * rewritten to the form it accepts (`application/json; charset=utf-8`) before any route sees it;
 * every other request passes untouched.
 */
export const contentType = createMiddleware<AppEnv>(async (c, next) => {
  const type = c.req.header("content-type");
  if (type && /\s;/.test(type)) {
    const headers = new Headers(c.req.raw.headers);
    headers.set(
      "content-type",
      type
        .split(";")
        .map((part) => part.trim())
        .join("; "),
    );
    // As hono/body-limit does: a new Request over the same, still unread, body.
    c.req.raw = new Request(c.req.raw, { headers });
  }
  await next();
});
