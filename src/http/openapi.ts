import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { AppEnv } from "./context";
import { errorResponse } from "./errors";
import { canonicalJsonType } from "./middleware/content-type";
import { jsonBodyChecks } from "./middleware/json-body";

/**
 * A router whose request validation failures use the one error shape, with field-level
 * details: `{"error":{"code":"validation_failed","message":…,"details":{"target":"json",
 * "issues":[{"path":"quantity","message":"…"}]}}}`. Every route it registers that reads a JSON
 * body gets `jsonBodyChecks` (encoding, charset, UTF-8) after its own middleware, just before
 * the validators that parse the body.
 */
export function router(): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const issues = result.error.issues.map((issue) => ({
        path: issue.path.map(String).join(".") || "(root)",
        message: issue.message,
      }));
      const summary = issues
        .slice(0, 3)
        .map((i) => `${i.path}: ${i.message}`)
        .join("; ");
      return errorResponse(c, 400, "validation_failed", `Invalid ${result.target}: ${summary}`, {
        target: result.target,
        issues,
      });
    },
  });
  const register = app.openapi;
  app.openapi = ((route: RouteConfig, handler: never, hook?: never) =>
    register(withJsonBodyChecks(route), handler, hook)) as typeof app.openapi;
  return app;
}

/** `route` with `jsonBodyChecks` last in its middleware when it declares a JSON body. */
function withJsonBodyChecks(route: RouteConfig): RouteConfig {
  const content = route.request?.body?.content ?? {};
  if (!Object.keys(content).some((type) => canonicalJsonType(type) !== undefined)) return route;
  const own = route.middleware ?? [];
  return { ...route, middleware: [...(Array.isArray(own) ? own : [own]), jsonBodyChecks] };
}
