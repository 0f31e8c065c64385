import { createRoute, z } from "@hono/zod-openapi";
import {
  createSession,
  deleteSession,
  isSessionData,
  MAX_SESSION_DATA_BYTES,
  nonFiniteNumberPath,
  readSession,
  SESSION_TOKEN,
  SESSION_TTL_SECONDS,
  sessionDataBytes,
} from "../../domain/sessions";
import { HttpError } from "../errors";
import { rateLimit } from "../middleware/rate-limit";
import { router } from "../openapi";
import { errorContent, MAX_ID, rateLimitedResponse, rateLimitHeaders } from "../schemas";

const tokenParams = z.object({
  token: z
    .string()
    .regex(SESSION_TOKEN, "must be 64 lower-case hex characters")
    .openapi({ param: { name: "token", in: "path" } }),
});

/** Any JSON object, kept as the client sent it (`isSessionData` says why not `z.record`). */
const sessionDataSchema = z
  .custom<Record<string, unknown>>(isSessionData, "must be a JSON object")
  .openapi({ type: "object", additionalProperties: {} });

/**
 * What `data` must also be: at most MAX_SESSION_DATA_BYTES of JSON, and only numbers JSON can
 * carry (an issue at the number's own path, e.g. `data.a.1.b`). The size first: it bounds the
 * walk, so the numbers are never looked for in data that is refused anyway.
 */
function checkSessionData(data: unknown, ctx: z.RefinementCtx): void {
  // Not an object: the custom check above has said so.
  if (!isSessionData(data)) return;
  if (sessionDataBytes(data) > MAX_SESSION_DATA_BYTES) {
    ctx.addIssue({
      code: "custom",
      message: `must serialise to at most ${MAX_SESSION_DATA_BYTES} bytes of JSON`,
    });
    return;
  }
  const path = nonFiniteNumberPath(data);
  if (path) {
    ctx.addIssue({
      code: "custom",
      path,
      message:
        "must be a finite number: JSON has no Infinity (a literal such as 1e400 overflows to it), and it would be stored as null",
    });
  }
}

const newSessionSchema = z
  .strictObject({
    userId: z.number().int().positive().max(MAX_ID),
    data: sessionDataSchema.superRefine(checkSessionData).optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(SESSION_TTL_SECONDS.min)
      .max(SESSION_TTL_SECONDS.max)
      .optional()
      .openapi({ default: SESSION_TTL_SECONDS.default }),
    sliding: z
      .boolean()
      .optional()
      .openapi({ description: "Every read renews the full TTL", default: false }),
  })
  .openapi("NewSession");

const createdSchema = z
  .object({ token: z.string(), expiresInSeconds: z.number().int() })
  .openapi("SessionCreated");

const sessionSchema = z
  .object({
    userId: z.number().int(),
    data: z.record(z.string(), z.unknown()),
    createdAt: z.string(),
    sliding: z.boolean(),
    ttlSeconds: z.number().int().openapi({ description: "Seconds left (after renewal)" }),
  })
  .openapi("Session");

/** Sessions live only in Redis: when it fails or passes its deadline there is nothing to serve. */
const redisUnavailableResponse = {
  description:
    "Redis unavailable or past REDIS_TIMEOUT_MS (`redis_unavailable`); retry after `Retry-After` seconds",
  headers: { "Retry-After": { schema: { type: "integer" as const, minimum: 1 } } },
  content: errorContent,
};

const createRouteDef = createRoute({
  method: "post",
  path: "/sessions",
  tags: ["sessions"],
  summary: "Create a session (Redis only, expires by TTL)",
  middleware: [rateLimit("sessions")],
  request: {
    body: { required: true, content: { "application/json": { schema: newSessionSchema } } },
  },
  responses: {
    201: {
      description: "Created; keep the token secret",
      headers: rateLimitHeaders,
      content: { "application/json": { schema: createdSchema } },
    },
    400: { description: "Invalid body", content: errorContent },
    413: { description: "Body over the request size limit", content: errorContent },
    422: {
      description: "userId names no user (`invalid_reference`, `details.issues`)",
      content: errorContent,
    },
    429: rateLimitedResponse,
    503: redisUnavailableResponse,
  },
});

const readRouteDef = createRoute({
  method: "get",
  path: "/sessions/{token}",
  tags: ["sessions"],
  summary: "Read a session; a sliding session's TTL is renewed by the same request",
  request: { params: tokenParams },
  responses: {
    200: { description: "The session", content: { "application/json": { schema: sessionSchema } } },
    400: { description: "Malformed token", content: errorContent },
    503: redisUnavailableResponse,
    404: { description: "No such session, or it expired", content: errorContent },
  },
});

const deleteRouteDef = createRoute({
  method: "delete",
  path: "/sessions/{token}",
  tags: ["sessions"],
  summary: "End a session",
  request: { params: tokenParams },
  responses: {
    204: { description: "Deleted" },
    400: { description: "Malformed token", content: errorContent },
    503: redisUnavailableResponse,
    404: { description: "No such session, or it expired", content: errorContent },
  },
});

const notFound = () => new HttpError(404, "not_found", "No such session (or it expired)");

export const sessionsRoutes = router()
  .openapi(createRouteDef, async (c) => {
    const input = c.req.valid("json");
    const created = await createSession(c.var.services, input);
    if (!created) {
      // As a product's unknown categoryId: the request is well formed, its reference is not.
      throw new HttpError(422, "invalid_reference", `userId: no user ${input.userId}`, {
        target: "json",
        issues: [{ path: "userId", message: "No user with this id" }],
      });
    }
    c.header("Cache-Control", "no-store");
    return c.json(created, 201);
  })
  .openapi(readRouteDef, async (c) => {
    const session = await readSession(c.var.services, c.req.valid("param").token);
    if (!session) throw notFound();
    // Private and changing with every read: no shared or browser cache may keep it.
    c.header("Cache-Control", "no-store");
    return c.json(session, 200);
  })
  .openapi(deleteRouteDef, async (c) => {
    if (!(await deleteSession(c.var.services, c.req.valid("param").token))) throw notFound();
    return c.body(null, 204);
  });
