import { createRoute, z } from "@hono/zod-openapi";
import {
  discardRow,
  listOutbox,
  outboxRow,
  PREVIEW_CHARS,
  type RowAction,
  retryRow,
} from "../../domain/outbox";
import { recordOutboxIntent } from "../../domain/outbox-sweep";
import { outboxEventProblems } from "../../jobs/drain";
import { HttpError } from "../errors";
import { adminAuth } from "../middleware/admin-auth";
import { router } from "../openapi";
import { errorContent, errors, security } from "./admin-common";

/**
 * The outbox rows an operator has to look at: what is parked (every drain attempt failed, or a
 * dead letter that is not an event) and why, and what to do with each: give it back to the
 * drains once its cause is mended, or discard it. Before, `/admin/stats` counted parked rows
 * and nothing showed or settled them but SQL. Only parked rows can be retried or discarded:
 * the others belong to the drains or to a queue chain, and acting on them ran their purges
 * twice or sent them to the queue again.
 */
export const adminOutboxRoutes = router();

adminOutboxRoutes.use("/admin/outbox", adminAuth);
adminOutboxRoutes.use("/admin/outbox/*", adminAuth);

const rowFields = {
  id: z.number().int(),
  createdAt: z.string().openapi({ example: "2026-11-24T21:47:03.120Z" }),
  attempts: z.number().int(),
  parked: z.boolean().openapi({ description: "Drains no longer try it; retry or discard it" }),
  lastError: z.string().nullable(),
  queuedAt: z.string().nullable().openapi({ description: "Handed to the queue in an outage" }),
  continuedAt: z
    .string()
    .nullable()
    .openapi({ description: "Its pattern purges continue on the queue" }),
  deadLetterId: z
    .string()
    .nullable()
    .openapi({ description: "The queue message it came as, for a dead letter" }),
  eventText: z.string().openapi({
    description: `The event's JSON text (in a list, its first ${PREVIEW_CHARS} characters)`,
  }),
  eventChars: z.number().int().openapi({ description: "The whole event's JSON length" }),
};
const rowView = z.object(rowFields).openapi("OutboxRow");

/** Digits only: `Number()` took `0x10` as 16 and an empty value as 0. */
const digits = (what: string, max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, `${what} must be a whole number`)
    .transform(Number)
    .pipe(z.number().int().max(max, `${what} must be at most ${max}`));

const listQuery = z.object({
  state: z
    .enum(["parked", "pending"])
    .default("parked")
    .openapi({ description: "parked (the default): drains no longer try them; pending: they do" }),
  limit: digits("limit", 100)
    .pipe(z.number().min(1, "limit must be at least 1"))
    .optional()
    .openapi({ type: "integer", minimum: 1, maximum: 100, description: "Rows per page (20)" }),
  after: digits("after", Number.MAX_SAFE_INTEGER)
    .optional()
    .openapi({ type: "integer", minimum: 0, description: "The `nextCursor` of the page before" }),
});

/** `{id}` of an outbox row: a bigint, so not the entities' 32-bit idParams. */
const rowParams = z.object({
  id: digits("id", Number.MAX_SAFE_INTEGER)
    .pipe(z.number().min(1, "id must be a positive integer"))
    .openapi({
      param: { name: "id", in: "path" },
      type: "string",
      pattern: "^\\d{1,16}$",
      example: "1234",
    }),
});

adminOutboxRoutes.openapi(
  createRoute({
    method: "get",
    path: "/admin/outbox",
    tags: ["admin"],
    security,
    summary: "Outbox rows not applied yet: parked ones (the default) or those the drains still try",
    request: { query: listQuery },
    responses: {
      200: {
        description: `Oldest first, each event cut to ${PREVIEW_CHARS} characters (GET /admin/outbox/{id} has it whole); \`nextCursor\` is null on the last page`,
        content: {
          "application/json": {
            schema: z.object({ items: z.array(rowView), nextCursor: z.number().int().nullable() }),
          },
        },
      },
      ...errors,
    },
  }),
  async (c) => {
    const { state, limit = 20, after = 0 } = c.req.valid("query");
    const { db, config } = c.var.services;
    const items = await listOutbox(db, config.CACHE_PREFIX, { state, limit, afterId: after });
    c.header("Cache-Control", "no-store");
    const last = items.at(-1);
    return c.json({ items, nextCursor: items.length === limit && last ? last.id : null }, 200);
  },
);

const rowResponses = {
  404: errorContent("No outbox row with this id (under this deployment's CACHE_PREFIX)"),
};

adminOutboxRoutes.openapi(
  createRoute({
    method: "get",
    path: "/admin/outbox/{id}",
    tags: ["admin"],
    security,
    summary: "One outbox row, its event whole, settled or not",
    request: { params: rowParams },
    responses: {
      200: {
        description: "The row",
        content: {
          "application/json": {
            schema: z
              .object({
                ...rowFields,
                event: z.unknown(),
                processedAt: z.string().nullable(),
              })
              .openapi("OutboxRowWhole"),
          },
        },
      },
      ...errors,
      ...rowResponses,
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const { db, config } = c.var.services;
    const row = await outboxRow(db, config.CACHE_PREFIX, id);
    if (!row) throw rowError("missing", id);
    c.header("Cache-Control", "no-store");
    return c.json(row, 200);
  },
);

/** The row's 404 or 409 for an action that found nothing to do. */
function rowError(action: Exclude<RowAction, "done">, id: number): HttpError {
  if (action === "missing") return new HttpError(404, "not_found", `No outbox row ${id}`);
  return new HttpError(
    409,
    "conflict",
    action === "processed"
      ? `Outbox row ${id} is settled already (applied or discarded)`
      : `Outbox row ${id} is not parked: the drains or the queue still have it (retry and discard take parked rows only)`,
  );
}

function expectDone(action: RowAction, id: number): void {
  if (action !== "done") throw rowError(action, id);
}

const actionConflict = {
  409: errorContent(
    "Settled already, not parked (the drains or the queue have it), or, for a retry, not an event a drain could apply",
  ),
};

/** An action on one parked row: 200 with `body`, or the row's 404 / 409. */
function rowAction<T extends z.ZodType>(
  method: "post" | "delete",
  path: string,
  summary: string,
  answer: { description: string; body: T },
) {
  return createRoute({
    method,
    path,
    tags: ["admin"],
    security,
    summary,
    request: { params: rowParams },
    responses: {
      200: {
        description: answer.description,
        content: { "application/json": { schema: answer.body } },
      },
      ...errors,
      ...rowResponses,
      ...actionConflict,
    },
  });
}

adminOutboxRoutes.openapi(
  rowAction(
    "post",
    "/admin/outbox/{id}/retry",
    "Give a parked row back to the drains (attempts reset): the next cron tick applies it",
    {
      description: "Pending again, with no attempt charged",
      body: z.object({ id: z.number().int(), retried: z.literal(true) }),
    },
  ),
  async (c) => {
    const { id } = c.req.valid("param");
    const { db, config } = c.var.services;
    // The row as read says which 404 or 409 it is; only a parked one is updated (whose
    // UPDATE still checks, for a drain or an admin acting meanwhile).
    const row = await outboxRow(db, config.CACHE_PREFIX, id);
    if (!row) throw rowError("missing", id);
    if (row.processedAt !== null) throw rowError("processed", id);
    if (!row.parked) throw rowError("not-parked", id);
    // A dead letter that is not an event would be parked again by 10 drains, its reason
    // overwritten by the drains' "invalid event": it can only be discarded.
    const problems = outboxEventProblems(row.event);
    if (problems) {
      throw new HttpError(
        409,
        "conflict",
        `Outbox row ${id} is not an event a drain could apply (${problems}): discard it`,
      );
    }
    // Pending again for the drains: recorded as a writer's new row is, or a quiet cron tick in
    // sweep mode would leave it until the periodic sweep (src/domain/outbox-sweep.ts).
    await recordOutboxIntent(c.var.services.redis, config);
    expectDone(await retryRow(db, config.CACHE_PREFIX, id), id);
    return c.json({ id, retried: true as const }, 200);
  },
);

adminOutboxRoutes.openapi(
  rowAction(
    "delete",
    "/admin/outbox/{id}",
    "Discard a parked row without applying it (it stays in the table, marked discarded)",
    {
      description: "Settled: out of the lag and the parked count",
      body: z.object({ id: z.number().int(), discarded: z.literal(true) }),
    },
  ),
  async (c) => {
    const { id } = c.req.valid("param");
    const { db, config } = c.var.services;
    expectDone(await discardRow(db, config.CACHE_PREFIX, id), id);
    return c.json({ id, discarded: true as const }, 200);
  },
);
