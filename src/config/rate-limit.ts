import { z } from "zod";

/**
 * A rate limit as configured in wrangler.toml `[vars]`: `limit` requests per client per window
 * of `windowSeconds` (a fixed window: see src/http/middleware/rate-limit.ts for why).
 */
export interface RateLimitRule {
  readonly limit: number;
  readonly windowSeconds: number;
}

/** Largest budget and window accepted: beyond these a "limit" no longer limits anything. */
const RATE_LIMIT_BOUNDS = {
  maxLimit: 1_000_000,
  maxWindowSeconds: 86_400,
} as const;

const UNIT_SECONDS = { s: 1, m: 60, h: 3_600 } as const;
const SPEC = /^(\d{1,7})\s*\/\s*(\d{1,6})\s*(s|m|h)$/;

/**
 * Parses `"<requests>/<window><s|m|h>"` or `"off"`; returns the rule, null for "off", or a
 * sentence saying what is wrong.
 *
 * @example
 * parseRateLimit("60/60s"); // { limit: 60, windowSeconds: 60 }
 * parseRateLimit("10/1m");  // { limit: 10, windowSeconds: 60 }
 * parseRateLimit("off");    // null
 * parseRateLimit("60");     // 'must look like "60/60s" ...'
 */
export function parseRateLimit(spec: string): RateLimitRule | null | string {
  const text = spec.trim().toLowerCase();
  if (text === "off") return null;
  const m = SPEC.exec(text);
  if (!m) {
    return 'must look like "60/60s" (requests per window, window in s, m or h) or be "off"';
  }
  const limit = Number(m[1]);
  const windowSeconds = Number(m[2]) * UNIT_SECONDS[m[3] as keyof typeof UNIT_SECONDS];
  if (limit < 1 || limit > RATE_LIMIT_BOUNDS.maxLimit) {
    return `must allow 1 to ${RATE_LIMIT_BOUNDS.maxLimit} requests per window (got ${limit})`;
  }
  if (windowSeconds < 1 || windowSeconds > RATE_LIMIT_BOUNDS.maxWindowSeconds) {
    return `must have a window from 1s to 24h (got ${windowSeconds}s)`;
  }
  return { limit, windowSeconds };
}

/** A zod field for one rate-limit var: the rule, or null when "off". */
export function rateLimitField(fallback: string) {
  return z
    .string()
    .default(fallback)
    .transform((spec, ctx): RateLimitRule | null => {
      const parsed = parseRateLimit(spec);
      if (typeof parsed === "string") {
        ctx.addIssue({ code: "custom", message: parsed });
        return z.NEVER;
      }
      return parsed;
    });
}
