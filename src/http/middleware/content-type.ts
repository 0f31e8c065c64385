import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";

/**
 * `application/json` or a `+json` type (`application/merge-patch+json`), parameters aside: the
 * types @hono/zod-openapi's gate takes for JSON (so not `application/vnd.v2+json`, which it
 * refuses whatever its parameters).
 */
const JSON_ESSENCE = /^application\/([a-z.-]+\+)?json$/i;

/**
 * A JSON Content-Type in the one form @hono/zod-openapi's media-type gate accepts: the media
 * type, then `; charset=…` when one was given; every other parameter is dropped (none means
 * anything for JSON, RFC 8259 §11), and so are empty ones. Undefined for any other type.
 *
 * RFC 9110 §5.6.6 allows whitespace around `;`, empty parameters (`application/json;`) and any
 * token as a parameter name (`x_y=1`); the gate accepts none of them, so such JSON was a 415.
 *
 * @example
 *   canonicalJsonType("application/json ; charset=UTF-8;"); // "application/json; charset=UTF-8"
 *   canonicalJsonType("application/json; x_y=1"); // "application/json"
 *   canonicalJsonType("text/plain"); // undefined
 */
export function canonicalJsonType(header: string): string | undefined {
  const [essence = "", ...params] = header
    .split(";")
    .map((part) => part.trim())
    .filter((part) => part !== "");
  if (!JSON_ESSENCE.test(essence)) return undefined;
  const charset = params.find((p) => /^charset=/i.test(p));
  return charset === undefined ? essence : `${essence}; ${charset}`;
}

/**
 * The `charset` a Content-Type declares, unquoted (undefined when it declares none).
 *
 * @example
 *   declaredCharset('application/json; charset="UTF-8"'); // "UTF-8"
 */
export function declaredCharset(header: string): string | undefined {
  for (const part of header.split(";").slice(1)) {
    const m = /^\s*charset=(.*?)\s*$/i.exec(part);
    if (m) return m[1]?.replace(/^"(.*)"$/, "$1");
  }
  return undefined;
}

/**
 * Rewrites the request's Content-Type, before any route sees it, to the form the routes' media
 * type gate accepts: a JSON type to `canonicalJsonType`'s form; any other type only loses the
 * whitespace before its `;` (`application/x-www-form-urlencoded ; x=1`). Every other request
 * passes untouched.
 */
export const contentType = createMiddleware<AppEnv>(async (c, next) => {
  const type = c.req.header("content-type");
  if (type) {
    const rewritten =
      canonicalJsonType(type) ??
      (/\s;/.test(type)
        ? type
            .split(";")
            .map((part) => part.trim())
            .join("; ")
        : type);
    if (rewritten !== type) {
      const headers = new Headers(c.req.raw.headers);
      headers.set("content-type", rewritten);
      // As hono/body-limit does: a new Request over the same, still unread, body.
      c.req.raw = new Request(c.req.raw, { headers });
    }
  }
  await next();
});
