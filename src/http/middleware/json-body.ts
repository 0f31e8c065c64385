import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";
import { errorResponse } from "../errors";

const JSON_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i;

/**
 * Hono's JSON validator answers an unparseable body with a bare 400; this answers it in the
 * validation shape (`details.issues`) like every other bad input. The body is read once here
 * and Hono keeps it for the validators.
 */
export const jsonBody = createMiddleware<AppEnv>(async (c, next) => {
  const method = c.req.method;
  if (method !== "POST" && method !== "PATCH" && method !== "PUT") return next();
  if (!JSON_TYPE.test(c.req.header("content-type") ?? "")) return next();
  const text = await c.req.text();
  let problem: string | undefined;
  if (text.trim() === "") problem = "Request body is empty; expected a JSON object";
  else {
    try {
      JSON.parse(text);
    } catch (error) {
      problem = `Malformed JSON: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (problem) {
    return errorResponse(c, 400, "validation_failed", `Invalid json: ${problem}`, {
      target: "json",
      issues: [{ path: "(root)", message: problem }],
    });
  }
  await next();
});
