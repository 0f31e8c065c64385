import { z } from "zod";
import { consistencyField } from "./consistency";
import { rateLimitField } from "./rate-limit";

/**
 * The Worker's bindings. Secrets and vars come from `.dev.vars` locally and from
 * `wrangler secret put` / `[vars]` in production; the queue binding from wrangler.toml.
 */
export interface Env {
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  DATABASE_URL?: string;
  NEON_WS_PROXY?: string;
  ADMIN_TOKEN?: string;
  CACHE_PREFIX?: string;
  CACHE_CONSISTENCY?: string;
  PUBLISH_EVENTS?: string;
  // --- rate limits (src/http/middleware/rate-limit.ts) ---
  RATE_LIMIT_WRITES?: string;
  RATE_LIMIT_SESSIONS?: string;
  RATE_LIMIT_TIMEOUT_MS?: string;
  // --- end rate limits ---
  REDIS_TIMEOUT_MS?: string;
  DB_CONNECT_TIMEOUT_MS?: string;
  DB_QUERY_TIMEOUT_MS?: string;
  LOADER_BACKOFF_MS?: string;
  DB_BREAKER_MS?: string;
  QUEUE_TIMEOUT_MS?: string;
  OUTBOX_RETENTION_HOURS?: string;
  OUTBOX_SWEEP_MINUTES?: string;
  PURGE_DEAD_LETTER_QUEUE?: string;
  PURGE_QUEUE?: Queue<unknown>;
}

const hints: Record<string, string> = {
  UPSTASH_REDIS_REST_URL:
    "the Upstash REST URL (https://<db>.upstash.io), or http://127.0.0.1:8079 for the local gateway",
  UPSTASH_REDIS_REST_TOKEN: "the Upstash REST token (wrangler secret put UPSTASH_REDIS_REST_TOKEN)",
  DATABASE_URL: "a Postgres URL (Neon's pooled connection string in production)",
  ADMIN_TOKEN: "a long random string that guards /admin (wrangler secret put ADMIN_TOKEN)",
  // --- rate limits ---
  RATE_LIMIT_WRITES: 'requests per client per window, e.g. "60/60s", or "off"',
  RATE_LIMIT_SESSIONS: 'requests per client per window, e.g. "10/60s", or "off"',
  RATE_LIMIT_TIMEOUT_MS:
    "milliseconds a rate-limit check may take before the request goes through unchecked",
  // --- end rate limits ---
};

/** A duration in ms given as a var (strings) or a number: an integer within [min, max]. */
const millis = (fallback: number, min: number, max: number) =>
  z
    .union([z.string(), z.number()])
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return fallback;
      const n = typeof v === "number" ? v : /^\d{1,7}$/.test(v.trim()) ? Number(v) : Number.NaN;
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `must be an integer number of milliseconds from ${min} to ${max} (default ${fallback})`,
        });
        return z.NEVER;
      }
      return n;
    });

/**
 * A whole number of `unit` given as a var (strings) or a number, within [0, max]; `zero` says
 * what 0 means.
 */
const whole = (unit: "hours" | "minutes", fallback: number, max: number, zero: string) =>
  z
    .union([z.string(), z.number()])
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return fallback;
      const n = typeof v === "number" ? v : /^\d{1,5}$/.test(v.trim()) ? Number(v) : Number.NaN;
      if (!Number.isInteger(n) || n < 0 || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `must be a whole number of ${unit} from 0 to ${max} (default ${fallback}; 0 ${zero})`,
        });
        return z.NEVER;
      }
      return n;
    });

const schema = z.object({
  // The client checks the raw text against its own, case-sensitive pattern (@upstash/redis:
  // /^https?:\/\/[^\s#$./?].\S*$/) and throws on the first request: "HTTPS://…" or a one-letter
  // host passed the URL check and became a bare 500 on every route, /health included.
  UPSTASH_REDIS_REST_URL: z
    .url({ protocol: /^https?$/ })
    .regex(
      /^https?:\/\/[^\s#$./?].\S*$/,
      "must start with http:// or https:// (lower case) and a host",
    ),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must start with postgres:// or postgresql://")
    // A URL the driver cannot parse failed every connect, answered as an outage (503, retry)
    // instead of the typo it is. The reason never echoes the value (it holds the password).
    .superRefine((value, ctx) => {
      const problem = postgresUrlProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  // Set only for local runs: host:port/path of tools/neon-ws-proxy. Production uses Neon's defaults.
  NEON_WS_PROXY: z
    .string()
    .regex(/^[^/\s:]+(:\d+)?(\/\S*)?$/, "must look like 127.0.0.1:8433/v2 (no scheme)")
    .optional(),
  ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters"),
  CACHE_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,16}$/, "must be 1-16 characters of a-z, 0-9, _ or -")
    .default("ec"),
  // Per entity, where cache hits are read: "strict" (primary) or "replica" (nearest read
  // replica); e.g. "products=replica". Unnamed entities are strict (src/config/consistency.ts).
  CACHE_CONSISTENCY: consistencyField(),
  // Opt-in: the queue consumer PUBLISHes each applied batch on {CACHE_PREFIX}:events for
  // subscribers outside the edge (one extra Redis request per batch).
  PUBLISH_EVENTS: z
    .enum(["0", "1", "true", "false"], { message: 'must be "1"/"true" or "0"/"false"' })
    .optional()
    .transform((v) => v === "1" || v === "true"),
  // --- rate limits: per client (CF-Connecting-IP), one Redis request per check; see README ---
  // Writes: POST/PATCH/DELETE on products, categories and users, and POST /products/{id}/reserve.
  RATE_LIMIT_WRITES: rateLimitField("60/60s"),
  // Session creation (POST /sessions).
  RATE_LIMIT_SESSIONS: rateLimitField("10/60s"),
  // A check slower than this lets the request through (fail open) instead of holding it.
  RATE_LIMIT_TIMEOUT_MS: millis(500, 10, 10_000),
  // --- end rate limits ---
  // Deadlines (README "Failure behaviour"): one Upstash command including its retry; opening a
  // Postgres connection; one SQL statement. And how long a key whose loader failed is served
  // from fail-safe (or fails fast) before the loader is tried again; 0 turns that off.
  REDIS_TIMEOUT_MS: millis(1000, 50, 60_000),
  DB_CONNECT_TIMEOUT_MS: millis(5000, 100, 60_000),
  DB_QUERY_TIMEOUT_MS: millis(5000, 100, 60_000),
  LOADER_BACKOFF_MS: millis(2000, 0, 60_000),
  // After a Postgres connect fails, how long other connects of the isolate fail at once instead
  // of each waiting out DB_CONNECT_TIMEOUT_MS (src/db/breaker.ts); 0 turns that off.
  DB_BREAKER_MS: millis(2000, 0, 60_000),
  // One Queues send or sendBatch (the write path's hand-over, POST /admin/invalidate async, the
  // drain's hand-over, the consumer's continuations): a producer that never answers would
  // otherwise hold the response, a cron tick or a consumer batch (src/domain/queue.ts).
  QUEUE_TIMEOUT_MS: millis(2000, 50, 60_000),
  // How long the cron keeps an applied outbox row before deleting it (src/domain/outbox.ts,
  // pruneAndLag): the table otherwise grows with every write. 0 keeps every row.
  OUTBOX_RETENTION_HOURS: whole("hours", 168, 87_600, "keeps every row"),
  // When the cron may leave Postgres alone so that an idle Neon compute scales to zero
  // (src/domain/outbox-sweep.ts): a tick reads the outbox only after a write, while rows are
  // pending, or when its last read is this old. 0 (the default) reads it on every tick.
  OUTBOX_SWEEP_MINUTES: whole("minutes", 0, 1440, "reads the outbox on every tick"),
  // The purge queue's dead-letter queue (wrangler.toml): batches from it go back to the outbox
  // (src/jobs/dead-letter.ts) instead of being applied.
  PURGE_DEAD_LETTER_QUEUE: z
    .string()
    .regex(/^[a-z0-9-]{1,63}$/, "must be a queue name (1-63 characters of a-z, 0-9 and -)")
    .default("edgecache-purge-dlq"),
});

export type AppConfig = z.infer<typeof schema>;

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    /** Some binding is missing altogether (not only malformed). */
    missing = problems.some((p) => p.startsWith("missing ")),
  ) {
    super(
      `Invalid Worker configuration: ${problems.join("; ")}. ` +
        (missing
          ? "Locally, copy .dev.vars.example to .dev.vars and fill it in (then restart `npm run dev`: it reads .dev.vars when it starts); "
          : "Locally, fix it in .dev.vars and restart `npm run dev` (it reads .dev.vars when it starts); ") +
        "in production, set them with `wrangler secret put NAME` or [vars] in wrangler.toml.",
    );
    this.name = "ConfigError";
  }
}

const cache = new WeakMap<object, AppConfig>();

/** Validates the bindings once per env object (workerd reuses it across requests in an isolate). */
export function loadConfig(env: Env): AppConfig {
  const cached = cache.get(env);
  if (cached) return cached;
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? "env");
      const value = (env as Record<string, unknown>)[name];
      const hint = hints[name] ? ` (${hints[name]})` : "";
      return value === undefined || value === ""
        ? `missing ${name}${hint}`
        : `${name} ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  cache.set(env, parsed.data);
  return parsed.data;
}

/**
 * Why `value` (which starts with postgres:// or postgresql://) is not a Postgres URL the driver
 * can use, or undefined: no host, a port out of range, or user info that is not valid
 * percent-encoding. Never quotes the value: it holds the password.
 *
 * @example
 * postgresUrlProblem("postgres://"); // "has no host"
 * postgresUrlProblem("postgres://u@db.example:5432/app"); // undefined
 */
export function postgresUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    // WHATWG URL parses a special scheme's authority; postgres: is not one, so parse it as http.
    url = new URL(value.replace(/^postgres(ql)?:/, "http:"));
  } catch {
    return "is not a URL (check the host, the port and the percent-encoding of the password)";
  }
  if (url.hostname === "") return "has no host";
  if (url.port !== "" && Number(url.port) > 65_535) return "has a port above 65535";
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    return "has a user name or password that is not valid percent-encoding (encode % as %25)";
  }
  return undefined;
}
