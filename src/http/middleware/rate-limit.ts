import { type Duration, Ratelimit } from "@upstash/ratelimit";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { BoundedMap } from "../../cache/bounded-map";
import type { RateLimitRule } from "../../config/rate-limit";
import type { Redis } from "../../redis/client";
import { withoutCommand } from "../../redis/errors";
import { clientIdentity } from "../client-id";
import type { AppEnv } from "../context";
import { errorResponse } from "../errors";

/** Which budget a route spends: `RATE_LIMIT_WRITES` or `RATE_LIMIT_SESSIONS`. */
export type RateLimitScope = "writes" | "sessions";

const ruleOf: Record<RateLimitScope, "RATE_LIMIT_WRITES" | "RATE_LIMIT_SESSIONS"> = {
  writes: "RATE_LIMIT_WRITES",
  sessions: "RATE_LIMIT_SESSIONS",
};

/**
 * The library's ephemeral cache (identifier -> blocked until, ms), bounded so a spray of
 * distinct refused clients cannot grow an isolate's memory without limit: past the bound the
 * oldest entry goes, which only means that client's next request asks Redis again.
 */
const refusedInIsolate = new BoundedMap<string, number>(10_000);

/** The outcome of one check, or null when it could not be made (fail open). */
interface Verdict {
  success: boolean;
  limit: number;
  remaining: number;
  /** Unix time (ms) when the current window ends. */
  reset: number;
}

/** The Redis key prefix of a scope: `{CACHE_PREFIX}:rl:{scope}` (then `:{client}:{window}`). */
const rateLimitPrefix = (cachePrefix: string, scope: RateLimitScope) =>
  `${cachePrefix}:rl:${scope}`;

async function check(
  redis: Redis,
  prefix: string,
  rule: RateLimitRule,
  client: string,
  timeoutMs: number,
): Promise<Verdict | null> {
  const window: Duration = `${rule.windowSeconds} s`;
  const limiter = new Ratelimit({
    redis,
    limiter: Ratelimit.fixedWindow(rule.limit, window),
    prefix,
    timeout: timeoutMs,
    ephemeralCache: refusedInIsolate,
    analytics: false,
    enableProtection: false,
    dynamicLimits: false,
    enableTelemetry: false,
  });
  try {
    const result = await limiter.limit(client);
    if (result.reason === "timeout") {
      // Not the client (its address is personal data, and one line per request says nothing more).
      console.warn(
        `rate limit ${prefix}: no answer from Redis within ${timeoutMs} ms; letting the request through unchecked`,
      );
      return null;
    }
    return result;
  } catch (error) {
    console.warn(
      `rate limit ${prefix} failed; letting the request through unchecked: ${withoutCommand(error instanceof Error ? error.message : String(error))}`,
    );
    return null;
  }
}

/** Seconds until `reset` (Unix ms), rounded up, at least 1 while the window is open. */
const secondsUntil = (reset: number) => Math.max(1, Math.ceil((reset - Date.now()) / 1000));

/**
 * RateLimit header fields as in draft-ietf-httpapi-ratelimit-headers-06 (the form most
 * clients read): Limit and Remaining as integers, Reset in seconds from now, and the Policy
 * (`<limit>;w=<window seconds>`).
 */
function setRateLimitHeaders(c: Context, rule: RateLimitRule, verdict: Verdict): void {
  c.header("RateLimit-Limit", String(verdict.limit));
  c.header("RateLimit-Remaining", String(verdict.remaining));
  c.header("RateLimit-Reset", String(secondsUntil(verdict.reset)));
  c.header("RateLimit-Policy", `${rule.limit};w=${rule.windowSeconds}`);
}

/**
 * Per-client rate limits on the routes that cost the most: writes (Postgres transaction, outbox,
 * invalidation) and session creation (a Redis key per call). Built on `@upstash/ratelimit`, not
 * on hand-written counters, and on the app's own Upstash client.
 *
 * Algorithm: **fixed window**. Every single-region algorithm of @upstash/ratelimit is one
 * EVALSHA per check (so all meet "one Redis request per check"); the fixed window wins on:
 * - its reset is exact: when the window ends the counter is gone, so `Retry-After` tells the
 *   truth. The sliding window reports the end of the current window too, but the weighted
 *   previous window can still refuse a client that waited exactly that long;
 * - one key per client and window (INCRBY, plus PEXPIRE on the first hit): a TTL counter that
 *   Redis deletes by itself, nothing to clean up;
 * - the cost: a client can spend up to twice its budget across a window boundary, which is
 *   acceptable for abuse protection (the README says so).
 *
 * What a check costs, read from the library's source (v2.2.0) and measured by
 * test/workers/rate-limit.test.ts through the gateway's counter:
 * - one EVALSHA; only after Redis lost its script cache, NOSCRIPT -> EVAL once (two requests);
 * - zero for a client already refused in this isolate: the refusal is remembered until the
 *   window's reset (the library's ephemeral cache, here a bounded map per isolate), so a flood
 *   from one client does not become a flood of Redis requests;
 * - analytics, deny lists ("protection") and dynamic limits are off: each would add requests.
 *
 * Failure: the check is raced against `RATE_LIMIT_TIMEOUT_MS` (the library's `timeout`, which
 * then answers "allowed") and any error is caught. Either way the request goes through without
 * RateLimit headers and a warning is logged: an outage of Redis must not stop writes, which have
 * their own fallback (the outbox), nor answer 500.
 *
 * Per scope: 429 `rate_limited` (with Retry-After) once the client's budget for the window is
 * spent, RateLimit headers on every checked response, nothing at all when the scope's var is "off".
 *
 * @example
 * createRoute({ method: "post", path: "/products", middleware: [rateLimit("writes")], ... })
 */
export function rateLimit(scope: RateLimitScope) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const { config } = c.var.services;
    const rule = config[ruleOf[scope]];
    if (!rule) return next();
    const client = clientIdentity(c.req.header("cf-connecting-ip"));
    const prefix = rateLimitPrefix(config.CACHE_PREFIX, scope);
    const verdict = await check(
      c.var.services.redis,
      prefix,
      rule,
      client,
      config.RATE_LIMIT_TIMEOUT_MS,
    );
    if (!verdict) return next();
    setRateLimitHeaders(c, rule, verdict);
    if (!verdict.success) {
      const retryAfter = secondsUntil(verdict.reset);
      c.header("Retry-After", String(retryAfter));
      return errorResponse(
        c,
        429,
        "rate_limited",
        `Too many ${scope === "writes" ? "writes" : "session creations"} from this client: ${rule.limit} per ${rule.windowSeconds}s. Retry after ${retryAfter}s.`,
        { limit: verdict.limit, remaining: verdict.remaining, reset: verdict.reset },
      );
    }
    await next();
  });
}
