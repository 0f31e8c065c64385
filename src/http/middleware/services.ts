import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { type Background, createServices } from "../../runtime/services";
import type { AppEnv } from "../context";

/** Hono throws when there is no ExecutionContext (app.request in unit tests). */
function executionContextOf(c: Context): Background | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
}

/** Validates the env (a clear 500 naming the missing variable) and scopes services to the request. */
export const services = createMiddleware<AppEnv>(async (c, next) => {
  const s = createServices(c.env, executionContextOf(c));
  c.set("services", s);
  try {
    await next();
  } finally {
    const closing = s
      .dispose()
      .catch((err: unknown) => console.error("closing services failed", err));
    const ctx = executionContextOf(c);
    if (ctx) ctx.waitUntil(closing);
    else await closing;
  }
});
