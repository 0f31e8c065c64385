import { createRoute, z } from "@hono/zod-openapi";
import { InvalidKeyError } from "../../cache";
import { type InvalidationEvent, isScanCursor } from "../../domain/events";
import { insertOutbox, outboxLag, releaseToDrains } from "../../domain/outbox";
import { recordOutboxIntent } from "../../domain/outbox-sweep";
import { queueCall } from "../../domain/queue";
import { highestShape, keysOfEveryShape } from "../../domain/shapes";
import { warmables } from "../../domain/warmables";
import {
  applyChange,
  DEFAULT_PATTERN_LIMITS,
  describeError,
  mergeChanges,
  runPatternJobs,
} from "../../jobs/apply-event";
import { readHeartbeats } from "../../jobs/heartbeat";
import { warmHotKeys } from "../../jobs/warm";
import type { Redis } from "../../redis/client";
import { HttpError } from "../errors";
import { adminAuth } from "../middleware/admin-auth";
import { router } from "../openapi";
import { errors, security } from "./admin-common";
import { isDashboardPath } from "./dashboard";

/**
 * Operator routes, all behind `Authorization: Bearer <ADMIN_TOKEN>`: invalidate now or via the
 * queue, engine and job statistics, one entry's raw state, and a warming run on demand.
 */
export const adminRoutes = router();

adminRoutes.openAPIRegistry.registerComponent("securitySchemes", "adminBearer", {
  type: "http",
  scheme: "bearer",
  description: "ADMIN_TOKEN",
});

adminRoutes.use("/admin/*", (c, next) =>
  isDashboardPath(c.req.path) ? next() : adminAuth(c, next),
);

// ---------------------------------------------------------------- schemas

// The engine's own rules (src/cache/keys.ts), checked here so a bad name is a 400, not a 500.
const NAME = /^[^\s*?[\]\\\p{Cc}\p{Cs}]{1,512}$/u;
const GLOB = /^[^\s\p{Cc}\p{Cs}]{1,512}$/u;
const nameRule = "1-512 characters without whitespace or * ? [ ] \\";

// The pattern given to the document by hand: the generator writes a regex with flags as
// `source/flags`, which no client can compile. JSON Schema patterns are ECMA-262 regexes read
// in Unicode mode by validators such as ajv, which \p{…} needs.
const cacheName = z.string().regex(NAME, `must be ${nameRule}`).openapi({ pattern: NAME.source });
const glob = z
  .string()
  .regex(GLOB, "must be 1-512 characters without whitespace")
  .openapi({ pattern: GLOB.source });

/** An event holds at most 1,000 keys, and each key goes under every shape generation. */
const ADMIN_KEYS_MAX = Math.floor(1000 / highestShape());

const invalidateBody = z
  .strictObject({
    keys: z.array(cacheName).max(ADMIN_KEYS_MAX).optional().openapi({
      description: `Logical keys, each purged under every shape generation (src/domain/shapes.ts): at most 1,000 keys in all`,
    }),
    tags: z.array(cacheName).max(1000).optional(),
    patterns: z.array(glob).max(100).optional().openapi({
      description:
        "Globs over the cache's logical keys (`product:*`, `products:*`), purged by bounded SCAN; sessions are not cache entries (DELETE /sessions/{token} ends one)",
    }),
    cursor: z
      .string()
      .refine(isScanCursor, "must be the cursor a previous call returned")
      .optional()
      .openapi({ description: "Resume an unfinished purge (exactly one pattern)" }),
    async: z
      .boolean()
      .optional()
      .openapi({ description: "Send to the purge queue (202) instead of applying now" }),
  })
  .refine((b) => (b.keys?.length ?? 0) + (b.tags?.length ?? 0) + (b.patterns?.length ?? 0) > 0, {
    message: "name at least one key, tag or pattern",
  })
  .refine((b) => b.cursor === undefined || b.patterns?.length === 1, {
    message: "cursor continues exactly one pattern",
    path: ["cursor"],
  })
  .openapi("AdminInvalidate");

const patternResult = z.object({
  pattern: z.string(),
  done: z.boolean(),
  cursor: z.string().openapi({ description: '"0" when done; else pass back as `cursor`' }),
  deleted: z.number().int(),
  scanned: z.number().int().openapi({
    description: "SCAN work done, in COUNT steps: an upper bound on keys examined, not their count",
  }),
  error: z.string().optional().openapi({ description: "Why the purge stopped (Redis failed)" }),
});

const invalidateReport = z
  .object({
    applied: z.object({
      keys: z.number().int(),
      tags: z.number().int(),
      removed: z.number().int(),
      tagsBumped: z.number().int(),
    }),
    patterns: z.array(patternResult),
    done: z.boolean(),
  })
  .openapi("AdminInvalidateReport");

const json = z.record(z.string(), z.unknown());

const statsSchema = z
  .object({
    cache: z
      .object({
        hit_ratio: z.number(),
        hits: z.number(),
        stale_hits: z.number(),
        misses: z.number(),
      })
      .catchall(z.number())
      .nullable(),
    hotKeys: z.array(z.object({ key: z.string(), score: z.number() })).nullable(),
    outbox: z
      .object({
        pending: z.number(),
        stuck: z.number().openapi({ description: "Parked rows: every drain attempt failed" }),
        oldestAgeMs: z.number().nullable(),
      })
      .nullable(),
    jobs: z
      .object({ warm: json.nullable(), purge: json.nullable(), deadLetter: json.nullable() })
      .nullable(),
    redis: z.object({
      used_memory: z.number().nullable(),
      maxmemory: z.number().nullable(),
      maxmemory_policy: z.string().nullable(),
      evicted_keys: z.number().nullable(),
      expired_keys: z.number().nullable(),
      reason: z.string().nullable(),
    }),
    errors: z.record(z.string(), z.string()),
  })
  .openapi("AdminStats");

const inspectionSchema = z
  .object({
    key: z.string(),
    now: z.number(),
    entry: json.nullable(),
    state: z.enum(["fresh", "stale", "fail-safe", "absent"]),
    pttl: z.number(),
    leasePttl: z.number(),
    version: z.number().nullable(),
    currentTags: z.record(z.string(), z.string().nullable()),
  })
  .openapi("AdminEntry");

const warmReportSchema = z
  .object({
    hot: z.number().int(),
    stale: z.number().int(),
    missing: z.number().int(),
    unmatched: z.number().int(),
    reloaded: z.number().int(),
    byEntity: z.record(z.string(), z.number().int()),
    notFound: z.number().int(),
    refused: z.number().int(),
    skipped: z.number().int(),
    failed: z.number().int(),
    queries: z.number().int(),
    redisRequests: z.number().int(),
    stoppedEarly: z.string().nullable(),
    errors: z.array(z.string()),
  })
  .openapi("WarmReport");

// ---------------------------------------------------------------- helpers

/** Redis (or Postgres) did not answer: the operator gets a 503 saying which, never a 500. */
function unavailable(what: string, error: unknown): HttpError {
  return new HttpError(
    503,
    `${what}_unavailable`,
    `${what} did not answer: ${describeError(error)}`,
  );
}

/** Pattern purge steps one admin request may spend (each is one Redis request). */
const ADMIN_PATTERN_STEPS = 10;

type MemoryFigures = z.infer<typeof statsSchema>["redis"];

/**
 * Memory and eviction figures from INFO, sent as a raw command (`redis.exec`); EVAL cannot run
 * INFO on every server. Servers that hide a field report it as null, with the reason.
 */
async function memoryFigures(redis: Redis): Promise<MemoryFigures> {
  const none = (reason: string): MemoryFigures => ({
    used_memory: null,
    maxmemory: null,
    maxmemory_policy: null,
    evicted_keys: null,
    expired_keys: null,
    reason,
  });
  let text: unknown;
  try {
    text = await redis.exec<unknown>(["INFO"]);
  } catch (error) {
    return none(`INFO failed: ${describeError(error)}`);
  }
  if (typeof text !== "string") return none("INFO did not answer with text");
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(":");
    if (at > 0 && !line.startsWith("#")) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  const num = (name: string) => {
    const value = Number(fields.get(name));
    return fields.has(name) && Number.isFinite(value) ? value : null;
  };
  const figures: MemoryFigures = {
    used_memory: num("used_memory"),
    maxmemory: num("maxmemory"),
    maxmemory_policy: fields.get("maxmemory_policy") ?? null,
    evicted_keys: num("evicted_keys"),
    expired_keys: num("expired_keys"),
    reason: null,
  };
  const missing = Object.entries(figures)
    .filter(([name, value]) => name !== "reason" && value === null)
    .map(([name]) => name);
  if (missing.length > 0) figures.reason = `INFO does not report ${missing.join(", ")}`;
  return figures;
}

// ---------------------------------------------------------------- routes

adminRoutes.openapi(
  createRoute({
    method: "post",
    path: "/admin/invalidate",
    tags: ["admin"],
    security,
    summary: "Invalidate keys, tags and key patterns, now or through the queue",
    request: {
      body: { required: true, content: { "application/json": { schema: invalidateBody } } },
    },
    responses: {
      200: {
        description:
          "Applied: keys and tags in one request, patterns in bounded steps (unfinished ones return their cursor)",
        content: { "application/json": { schema: invalidateReport } },
      },
      202: {
        description:
          "Accepted: recorded in the outbox (`outboxId`) and queued for the purge consumer; `queued: false` when the queue refused it and the cron's drain applies the row (within a tick, ~5 min); `outboxId: null` when Postgres was down and the message is all there is",
        content: {
          "application/json": {
            schema: z.object({
              queued: z.boolean(),
              at: z.number().int(),
              outboxId: z.number().int().nullable(),
            }),
          },
        },
      },
      ...errors,
    },
  }),
  async (c) => {
    const valid = c.req.valid("json");
    // A key names no shape generation: the purge takes the key under each one, the other
    // release's included during a deploy (src/domain/shapes.ts).
    const body = valid.keys ? { ...valid, keys: keysOfEveryShape(valid.keys) } : valid;
    const { cache, queue, config, db } = c.var.services;
    if (body.async) {
      const event: InvalidationEvent = {
        ...(body.keys?.length ? { keys: body.keys } : {}),
        ...(body.tags?.length ? { tags: body.tags } : {}),
        ...(body.patterns?.length ? { patterns: body.patterns } : {}),
        ...(body.cursor ? { cursor: body.cursor } : {}),
        origin: "admin",
        at: Date.now(),
      };
      if (!queue) {
        throw new HttpError(503, "queue_unavailable", "No PURGE_QUEUE binding: use async false");
      }
      // The outbox keeps it first, like a write's event: a message the queue gives up on (Redis
      // down past its retries) is handed back to the drains by the dead-letter consumer, and a
      // queue that refuses it now leaves it to the next drain. Without Postgres it still goes,
      // as a message only.
      let outboxId: number | null = null;
      try {
        const { origin, ...change } = event;
        // A pending row from now on (src/domain/outbox-sweep.ts); it never rejects.
        await recordOutboxIntent(c.var.services.redis, config);
        outboxId = await insertOutbox(db, change, origin, config.CACHE_PREFIX, { queued: true });
      } catch (error) {
        console.warn(`admin: async purge not recorded in the outbox: ${describeError(error)}`);
      }
      const message = outboxId === null ? event : { ...event, outboxIds: [outboxId] };
      try {
        // Within QUEUE_TIMEOUT_MS: a producer that hangs is refused like one that says no (the
        // message may still arrive; applying it twice only repeats an idempotent purge).
        await queueCall(queue.send(message, { contentType: "json" }), config.QUEUE_TIMEOUT_MS);
      } catch (error) {
        if (outboxId === null) throw unavailable("queue", error);
        // Stamped queued at its insert: in a Redis outage drains would leave it to a queue
        // that never took it for QUEUED_GRACE_S.
        c.var.services.background(
          releaseToDrains(db, config.CACHE_PREFIX, [outboxId]),
          "outbox release",
        );
        console.warn(
          `admin: queue refused the async purge; the cron's drain applies outbox row ${outboxId}: ${describeError(error)}`,
        );
        return c.json({ queued: false, at: event.at, outboxId }, 202);
      }
      return c.json({ queued: true, at: event.at, outboxId }, 202);
    }

    const merged = mergeChanges([
      { keys: body.keys, tags: body.tags, patterns: body.patterns, cursor: body.cursor },
    ]);
    let applied: z.infer<typeof invalidateReport>["applied"];
    try {
      const outcome = await applyChange(cache, merged.change);
      applied = {
        keys: outcome.keys,
        tags: outcome.tags,
        removed: outcome.removed,
        tagsBumped: outcome.tagsBumped,
      };
    } catch (error) {
      throw unavailable("redis", error);
    }
    const run = await runPatternJobs(cache, merged.patterns, {
      ...DEFAULT_PATTERN_LIMITS,
      steps: ADMIN_PATTERN_STEPS,
    });
    const patterns = run.outcomes.map((o) => ({
      pattern: o.glob,
      done: o.done,
      cursor: o.cursor,
      deleted: o.deleted,
      scanned: o.scanned,
      ...(o.error ? { error: o.error } : {}),
    }));
    const failed = run.outcomes.find((o) => o.error);
    if (failed) {
      // Redis failed during the purge: a 503 like every admin route whose Redis failed (a 200
      // read as "purged" by automation that checks the status), with how far each pattern got
      // in `details`. The same request again finishes it: each step is idempotent.
      throw new HttpError(503, "redis_unavailable", `redis did not answer: ${failed.error}`, {
        applied,
        patterns,
      });
    }
    return c.json({ applied, patterns, done: patterns.every((p) => p.done) }, 200);
  },
);

adminRoutes.openapi(
  createRoute({
    method: "get",
    path: "/admin/stats",
    tags: ["admin"],
    security,
    summary: "Engine counters, hot keys, outbox lag, job heartbeats, Redis memory and evictions",
    responses: {
      200: {
        description:
          "Each section is null when its source did not answer; `errors` says why. Memory figures are null with a `reason` where the server does not report them.",
        content: { "application/json": { schema: statsSchema } },
      },
      401: errors[401],
    },
  }),
  async (c) => {
    const { cache, redis, db, config } = c.var.services;
    const [stats, hot, lag, jobs, memory] = await Promise.allSettled([
      cache.stats(),
      cache.hotKeys(20),
      outboxLag(db, config.CACHE_PREFIX),
      readHeartbeats(redis, config.CACHE_PREFIX),
      memoryFigures(redis),
    ]);
    const errors: Record<string, string> = {};
    const value = <T>(name: string, result: PromiseSettledResult<T>): T | null => {
      if (result.status === "fulfilled") return result.value;
      errors[name] = describeError(result.reason);
      return null;
    };
    c.header("Cache-Control", "no-store");
    return c.json(
      {
        cache: value("cache", stats),
        hotKeys: value("hotKeys", hot),
        outbox: value("outbox", lag),
        jobs: value("jobs", jobs),
        redis:
          value("redis", memory) ??
          ({
            used_memory: null,
            maxmemory: null,
            maxmemory_policy: null,
            evicted_keys: null,
            expired_keys: null,
            reason: errors.redis ?? "unavailable",
          } satisfies MemoryFigures),
        errors,
      },
      200,
    );
  },
);

adminRoutes.openapi(
  createRoute({
    method: "get",
    path: "/admin/entries/{key}",
    tags: ["admin"],
    security,
    summary: "Everything Redis holds for one cache key",
    request: {
      params: z.object({
        key: cacheName.openapi({ param: { name: "key", in: "path" }, example: "product:42" }),
      }),
      query: z.object({
        version: cacheName
          .optional()
          .openapi({ description: "Version key to compare with", example: "product:42" }),
      }),
    },
    responses: {
      200: {
        description: "The entry (null when absent), its state, TTLs, lease, version and tags",
        content: { "application/json": { schema: inspectionSchema } },
      },
      ...errors,
    },
  }),
  async (c) => {
    const { key } = c.req.valid("param");
    const { version } = c.req.valid("query");
    try {
      const inspection = await c.var.services.cache.inspect(key, version);
      c.header("Cache-Control", "no-store");
      return c.json(
        { ...inspection, entry: inspection.entry as Record<string, unknown> | null },
        200,
      );
    } catch (error) {
      if (error instanceof InvalidKeyError) throw new HttpError(400, "invalid_key", error.message);
      throw unavailable("redis", error);
    }
  },
);

adminRoutes.openapi(
  createRoute({
    method: "post",
    path: "/admin/warm",
    tags: ["admin"],
    security,
    summary: "Run the warmer now (the cron does it every 5 minutes)",
    responses: {
      200: {
        description: "What the warmer did",
        content: { "application/json": { schema: warmReportSchema } },
      },
      401: errors[401],
    },
  }),
  async (c) => {
    try {
      return c.json(await warmHotKeys(c.var.services, warmables), 200);
    } catch (error) {
      // Loads and writes are reported per key; only the hot-key and freshness reads throw.
      throw unavailable("redis", error);
    }
  },
);
