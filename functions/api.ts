import type { Env } from "../src/config/env";
import { createApp } from "../src/http/app";
import { errorBody } from "../src/http/errors";

const app = createApp();

/**
 * The HTTP entry point. The app answers every error itself (src/http/middleware/errors.ts);
 * this guard is the last line: whatever still escapes `app.fetch` (a bug in an error handler, a
 * throw outside the middleware chain) becomes the JSON 500, never workerd's text/plain page
 * with a stack trace.
 */
export const fetch: ExportedHandlerFetchHandler<Env> = async (request, env, ctx) => {
  try {
    return await app.fetch(request, env, ctx);
  } catch (thrown) {
    console.error(`${request.method} ${new URL(request.url).pathname} escaped the app:`, thrown);
    return Response.json(
      errorBody("internal_error", "Internal error; the request id is in the logs."),
      { status: 500, headers: { "cache-control": "no-store" } },
    );
  }
};
