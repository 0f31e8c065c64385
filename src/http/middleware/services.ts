import { createMiddleware } from "hono/factory";
import { createServices } from "../../runtime/services";
import type { AppEnv } from "../context";

/** Validates the env (a clear 500 naming the missing variable) and scopes services to the request. */
export const services = createMiddleware<AppEnv>(async (c, next) => {
  const s = createServices(c.env);
  c.set("services", s);
  try {
    await next();
  } finally {
    const closing = s
      .dispose()
      .catch((err: unknown) => console.error("closing services failed", err));
    try {
      c.executionCtx.waitUntil(closing);
    } catch {
      // No ExecutionContext (app.request in unit tests): close inline instead.
      await closing;
    }
  }
});
