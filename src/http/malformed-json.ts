import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { errorResponse } from "./errors";

/**
 * A JSON body that does not parse, answered like every other bad input: 400
 * `validation_failed` with `details.issues`, naming what is wrong (empty, or the parser's
 * reason), instead of Hono's bare 400.
 *
 * Only where a route reads a JSON body: Hono's JSON validator throws when it cannot parse one,
 * and the error handler turns that into this answer. So the body is looked at after routing,
 * the method check and the admin token, as the rest of the request is: a malformed body on an
 * unknown path is still a 404, under a wrong method a 405, without a token a 401, and a route
 * that takes no body ignores one (many clients send `Content-Type: application/json` on every
 * POST).
 */

/** The message Hono's JSON validator throws with (hono/validator) when the body does not parse. */
const HONO_MALFORMED = "Malformed JSON in request body";

export function isMalformedJson(thrown: unknown): thrown is HTTPException {
  return (
    thrown instanceof HTTPException && thrown.status === 400 && thrown.message === HONO_MALFORMED
  );
}

/**
 * The 400 for the body the validator could not parse. Its text is cached by the request (the
 * validator read it), so reading it again costs nothing.
 *
 * @example
 *   app.onError(async (err, c) => (isMalformedJson(err) ? malformedJson(c) : other(err, c)));
 */
export async function malformedJson(c: Context): Promise<Response> {
  let text = "";
  try {
    text = await c.req.text();
  } catch {
    // Unreadable a second time: the generic reason below still applies.
  }
  let problem = "Malformed JSON";
  if (text.trim() === "") problem = "Request body is empty; expected a JSON object";
  else {
    try {
      JSON.parse(text);
    } catch (error) {
      problem = `Malformed JSON: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return errorResponse(c, 400, "validation_failed", `Invalid json: ${problem}`, {
    target: "json",
    issues: [{ path: "(root)", message: problem }],
  });
}
