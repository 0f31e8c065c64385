import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./context";
import { errorResponse } from "./errors";

/**
 * A router whose request validation failures use the one error shape, with field-level
 * details: `{"error":{"code":"validation_failed","message":…,"details":{"target":"json",
 * "issues":[{"path":"quantity","message":"…"}]}}}`.
 */
export function router(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
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
}
