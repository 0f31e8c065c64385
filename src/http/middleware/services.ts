import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { afterRequest } from "../../jobs/recovery";
import { type Background, createServices } from "../../runtime/services";
import type { AppEnv } from "../context";
import { answerSyncToken, incomingSyncToken } from "../sync-position";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Hono throws when there is no ExecutionContext (app.request in unit tests). */
function executionContextOf(c: Context): Background | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
}

/**
 * Validates the env (a clear 500 naming the missing variable) and scopes services to the
 * request: the request's Upstash client starts at the sync position the request carries, and
 * the response hands back the position it ended at (sync-position.ts). After the handler,
 * schedules an outbox recovery drain when one is due, then disposes of the services in
 * waitUntil (after every background task).
 */
export const services = createMiddleware<AppEnv>(async (c, next) => {
  const carried = incomingSyncToken(c);
  const s = createServices(c.env, executionContextOf(c), { syncToken: carried });
  c.set("services", s);
  try {
    await next();
    // Read now, before the recovery check below and the background work (fills, refreshes)
    // move it further: what the response covers is every Redis call the handler awaited.
    // Only writes hand a position back: read-your-writes needs the writer's, and a read that
    // answered a cookie would make every cached GET response uncacheable for shared caches.
    if (!SAFE_METHODS.has(c.req.method)) answerSyncToken(c, carried, s.syncToken);
  } finally {
    try {
      // After an outage, the first request that reaches Redis again drains the outbox
      // (in waitUntil, on this request's pool, before dispose ends it).
      afterRequest(s);
    } catch (err: unknown) {
      console.warn("outbox recovery not scheduled", err);
    }
    const closing = s
      .dispose()
      .catch((err: unknown) => console.error("closing services failed", err));
    const ctx = executionContextOf(c);
    if (ctx) ctx.waitUntil(closing);
    else await closing;
  }
});
