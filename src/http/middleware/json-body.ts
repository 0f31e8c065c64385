import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";
import { HttpError } from "../errors";
import { canonicalJsonType, declaredCharset } from "./content-type";
import { inexactInteger } from "./json-numbers";

/**
 * What the JSON validator cannot see in the text it parses, checked on the bytes before it runs:
 * - a `Content-Encoding` other than `identity` (gzip, br, …): the body is not decoded here, so
 *   it used to be parsed compressed (a 400 echoing binary) or, plain under a false `br`, taken
 *   as is. 415 with `Accept-Encoding: identity` (RFC 9110 §15.5.16, §12.5.3);
 * - a declared charset other than UTF-8 (`charset=iso-8859-1`): JSON exchanged between systems
 *   MUST be UTF-8 (RFC 8259 §8.1). 415;
 * - bytes that are not UTF-8: decoding replaced each bad sequence with U+FFFD, and the result
 *   was stored as if the client had sent it. 400 `validation_failed` on `(root)`, the shape of
 *   a body that does not parse (malformed-json.ts);
 * - an integer literal beyond 2^53 (json-numbers.ts): JSON.parse would round it, and a 64-bit
 *   id sent as a number would be stored as another. 400 `validation_failed`, naming it.
 *
 * Only on routes that read a JSON body (openapi.ts adds it after their own middleware), so, as
 * for a body that does not parse, routing, the method, the admin token and the rate limit come
 * first, and a route that takes no body ignores one. A body of another media type is left to
 * the route's media-type gate (415). The bytes are read through `c.req.arrayBuffer()`, which
 * Hono keeps: the validator's `c.req.json()` then decodes that copy, not the consumed stream.
 */
export const jsonBodyChecks = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.raw.body === null) return next();
  const encoding = c.req.header("content-encoding");
  const codings = (encoding ?? "")
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "" && coding !== "identity");
  if (codings.length > 0) {
    c.header("Accept-Encoding", "identity");
    throw new HttpError(
      415,
      "unsupported_media_type",
      `Content-Encoding ${codings.join(", ")} is not supported: send the body uncompressed`,
    );
  }
  const type = c.req.header("content-type");
  if (type === undefined || canonicalJsonType(type) === undefined) return next();
  const charset = declaredCharset(type);
  if (charset !== undefined && charset.toLowerCase() !== "utf-8") {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `charset ${charset} is not supported: send the JSON body as UTF-8 (RFC 8259), declared as charset=utf-8 or not at all`,
    );
  }
  const bytes = await c.req.arrayBuffer();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new HttpError(400, "validation_failed", "Invalid json: body is not valid UTF-8", {
      target: "json",
      issues: [{ path: "(root)", message: "body is not valid UTF-8" }],
    });
  }
  const literal = inexactInteger(text);
  // Only in a body that parses: a malformed one gets the validator's own answer.
  if (literal !== undefined && parses(text)) {
    const problem = `${literal} is an integer beyond 2^53, which a JSON number cannot hold exactly (it would be stored as ${BigInt(Number(literal))}): send it as a string`;
    throw new HttpError(400, "validation_failed", `Invalid json: ${problem}`, {
      target: "json",
      issues: [{ path: "(root)", message: problem }],
    });
  }
  return next();
});

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
