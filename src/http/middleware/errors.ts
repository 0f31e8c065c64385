import type { Context, ErrorHandler, MiddlewareHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { PatternRouter } from "hono/router/pattern-router";
import { LoadTimeoutError } from "../../cache";
import { ConfigError } from "../../config/env";
import { DatabaseUnavailableError, describeThrown, schemaBehind } from "../../db/errors";
import { RedisUnavailableError } from "../../redis/errors";
import type { AppEnv } from "../context";
import { errorResponse, findCause, HttpError, toError } from "../errors";
import { isMalformedJson, malformedJson } from "../malformed-json";

/** Retry-After when no configuration is at hand (it failed to load), and for Redis: seconds. */
const DEFAULT_RETRY_AFTER_S = 5;

/** Codes of the statuses Hono's own middleware answers with (body limit, auth, zod-openapi). */
const HTTP_EXCEPTION_CODES: Partial<Record<number, string>> = {
  401: "unauthorized",
  413: "payload_too_large",
  415: "unsupported_media_type",
};

/** Seconds a client should wait: the loader backoff, during which retries cannot succeed. */
function retryAfterSeconds(c: Context<AppEnv>): number {
  try {
    const ms = c.var.services?.config.LOADER_BACKOFF_MS;
    return ms === undefined ? DEFAULT_RETRY_AFTER_S : Math.max(1, Math.ceil(ms / 1000));
  } catch {
    return DEFAULT_RETRY_AFTER_S;
  }
}

/** The request's path as the logs show it: a session's token (it is the credential) left out. */
function loggedPath(url: string): string {
  return new URL(url).pathname.replace(/^\/sessions\/[^/]+/, "/sessions/<token>");
}

/**
 * A 503 the client may retry after `retryAfterS`: `log` says what failed (for the operator, with
 * the request's method and path), the answer is never cached.
 */
function unavailable(
  c: Context<AppEnv>,
  log: string,
  retryAfterS: number,
  code: string,
  message: string,
): Response {
  console.error(`${c.req.method} ${loggedPath(c.req.url)}: ${log}`);
  c.header("Retry-After", String(retryAfterS));
  c.header("Cache-Control", "no-store");
  return errorResponse(c, 503, code, message);
}

/**
 * The one place a thrown value becomes a response, in the one JSON shape. Unknown errors are
 * logged with their stack and answered without internals: a client never sees a stack trace,
 * a driver message or a server path.
 * - HttpError → its status and code (a 503 with Retry-After, as every 503 here: admin routes
 *   whose Redis or queue failed); ConfigError → 500 config_invalid naming the variables;
 * - Hono's HTTPException (body limit, auth, media type) → its status, with a code of its own;
 * - Postgres unreachable or timed out (DatabaseUnavailableError anywhere in the cause chain,
 *   including behind drizzle's "Failed query" and the cache's LoaderBackoffError), or a load
 *   past the cache's loadTimeout (LoadTimeoutError: queries that each kept their deadline but
 *   not together) → 503 database_unavailable with Retry-After;
 * - a statement naming a column or table the database lacks (SQLSTATE 42703 / 42P01: this
 *   release runs before its migration) → 503 database_unavailable with Retry-After, logged as
 *   "schema behind this release";
 * - Redis unreachable or timed out where nothing can stand in for it (RedisUnavailableError:
 *   sessions) → 503 redis_unavailable with Retry-After;
 * - anything else, Error or not → 500 internal_error.
 */
function respondToError(thrown: unknown, c: Context<AppEnv>): Response {
  if (thrown instanceof HttpError) {
    if (thrown.status === 503) {
      c.header("Retry-After", String(DEFAULT_RETRY_AFTER_S));
      c.header("Cache-Control", "no-store");
    }
    return errorResponse(c, thrown.status, thrown.code, thrown.message, thrown.details);
  }
  if (thrown instanceof ConfigError) {
    console.error(thrown.message);
    return errorResponse(c, 500, "config_invalid", thrown.message, { problems: thrown.problems });
  }
  if (thrown instanceof HTTPException) {
    const status = thrown.status;
    const code = HTTP_EXCEPTION_CODES[status] ?? "bad_request";
    if (status === 415) {
      // The JSON routes' media-type gate says only "Unsupported Media Type": say what to send
      // (curl -d without -H sends application/x-www-form-urlencoded).
      const sent = c.req.header("content-type");
      return errorResponse(
        c,
        415,
        code,
        `Send the body as JSON with Content-Type: application/json (${sent ? `got ${sent}` : "no Content-Type was sent"})`,
      );
    }
    return errorResponse(c, status, code, thrown.message || "Request rejected");
  }
  const down = findCause(thrown, DatabaseUnavailableError) ?? findCause(thrown, LoadTimeoutError);
  if (down) {
    return unavailable(
      c,
      `database unavailable: ${describeThrown(down)}`,
      retryAfterSeconds(c),
      "database_unavailable",
      "The database is unavailable or not answering; retry after the Retry-After delay.",
    );
  }
  const behind = schemaBehind(thrown);
  if (behind) {
    // The release runs before its migration (or a migration was rolled back): nothing was
    // written (the statement failed inside its transaction), and a retry succeeds once
    // `npm run db:migrate` has run.
    return unavailable(
      c,
      `the database schema is behind this release (SQLSTATE ${behind.code}: ${behind.message}); run the migrations (npm run db:migrate)`,
      retryAfterSeconds(c),
      "database_unavailable",
      "The database schema is older than this release (a migration has not run yet); retry after the Retry-After delay.",
    );
  }
  const redisDown = findCause(thrown, RedisUnavailableError);
  if (redisDown) {
    return unavailable(
      c,
      `redis unavailable: ${redisDown.message}`,
      DEFAULT_RETRY_AFTER_S,
      "redis_unavailable",
      "The session store (Redis) is unavailable or not answering; retry after the Retry-After delay.",
    );
  }
  console.error("unhandled error", thrown);
  return errorResponse(c, 500, "internal_error", "Internal error; the request id is in the logs.");
}

export const onError: ErrorHandler<AppEnv> = (err, c) =>
  isMalformedJson(err) ? malformedJson(c) : respondToError(err, c);

/**
 * The outermost middleware: turns whatever the rest of the chain throws into an Error, so it
 * reaches `onError` even when it is not one (the Neon driver rejects with a WebSocket
 * `ErrorEvent`; Hono's compose passes only `instanceof Error` to `onError`).
 */
export const catchAll: MiddlewareHandler<AppEnv> = async (_c, next) => {
  try {
    await next();
  } catch (thrown) {
    throw toError(thrown);
  }
};

/** The routes Hono knows: `{method, path}` as in `app.routes`. */
interface KnownRoute {
  method: string;
  path: string;
}

/**
 * The methods registered for `pathname`, matched by Hono's own router (the same pattern
 * semantics as the routing that just found no handler: params, `{regex}` constraints, optional
 * segments). Middleware, whose method is ALL or whose path has a wildcard, does not count. GET
 * implies HEAD, as in Hono. The router is built once per route table.
 */
function allowedMethods(routes: readonly KnownRoute[], pathname: string): string[] {
  // The app is strict (Hono's default): "/products/" is not "/products". The strictness lives
  // in Hono's path handling, not in its routers, which accept a trailing slash.
  if (pathname.length > 1 && pathname.endsWith("/")) return [];
  const router = routerFor(routes);
  const methods = new Set<string>();
  for (const method of router.methods) {
    if (router.match(method, pathname)[0].length > 0) methods.add(method);
  }
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods].sort();
}

/** Per route table, its router, rebuilt when routes were added since (rare: never at runtime). */
const routers = new WeakMap<readonly KnownRoute[], MethodRouter>();

interface MethodRouter {
  count: number;
  methods: Set<string>;
  match(method: string, path: string): ReturnType<PatternRouter<true>["match"]>;
}

function routerFor(routes: readonly KnownRoute[]): MethodRouter {
  const cached = routers.get(routes);
  if (cached && cached.count === routes.length) return cached;
  const router = new PatternRouter<true>();
  const methods = new Set<string>();
  for (const route of routes) {
    if (route.method === "ALL" || route.path.includes("*")) continue;
    const method = route.method.toUpperCase();
    router.add(method, route.path, true);
    methods.add(method);
  }
  const built = { count: routes.length, methods, match: router.match.bind(router) };
  routers.set(routes, built);
  return built;
}

/**
 * No handler matched: 405 with `Allow` when the path exists under other methods, else 404.
 * `routes` is read at request time, so it sees every route registered on the app.
 */
export const notFoundOrNotAllowed =
  (routes: () => readonly KnownRoute[]): NotFoundHandler<AppEnv> =>
  (c) => {
    const pathname = new URL(c.req.url).pathname;
    const allow = allowedMethods(routes(), pathname);
    if (allow.length > 0) {
      c.header("Allow", allow.join(", "));
      return errorResponse(
        c,
        405,
        "method_not_allowed",
        `${c.req.method} is not supported on ${pathname}; use ${allow.join(", ")}`,
        { allow },
      );
    }
    return errorResponse(c, 404, "not_found", `No route for ${c.req.method} ${pathname}`);
  };
