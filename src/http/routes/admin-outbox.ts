import { createRoute, z } from "@hono/zod-openapi";
import { discardRow, listOutbox, type RowAction, retryRow } from "../../domain/outbox";
import { HttpError } from "../errors";
import { adminAuth } from "../middleware/admin-auth";
import { router } from "../openapi";
import { errorContent, errors, security } from "./admin-common";

/**
 * The outbox rows an operator has to look at: what is parked (every drain attempt failed, or a
 * dead letter that is not an event) and why, and what to do with each: give it back to the
 * drains once its cause is mended, or discard it. Before, `/admin/stats` counted parked rows
 * and nothing showed or settled them but SQL.
 */
export const adminOutboxRoutes = router();

adminOutboxRoutes.use("/admin/outbox", adminAuth);
adminOutboxRoutes.use("/admin/outbox/*", adminAuth);

const rowView = z
  .object({
    id: z.number().int(),
    createdAt: z.string().openapi({ example: "2026-11-24T21:47:03.120Z" }),
    attempts: z.number().int(),
    lastError: z.string().nullable(),
    event: z.unknown().openapi({ description: "The event, or what a dead letter held" }),
    deadLetterId: z
      .string()
      .nullable()
      .openapi({ description: "The queue message it came as, for a dead letter" }),
  })
  .openapi("OutboxRow");

/** `{id}` of an outbox row: a bigint, so not the entities' 32-bit idParams. */
const rowParams = z.object({
  id: z
    .string()
    .regex(/^\d{1,16}$/, "id must be a positive integer")
    .transform(Number)
    .pipe(z.number().int().min(1).max(Number.MAX_SAFE_INTEGER))
    .openapi({ param: { name: "id", in: "path" }, type: "string", example: "1234" }),
});

const listQuery = z.object({
  state: z
    .enum(["parked", "pending"])
    .default("parked")
    .openapi({ description: "parked (the default): drains no longer try them; pending: they do" }),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .openapi({ description: "The `nextCursor` of the page before" }),
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
        description: "Oldest first; `nextCursor` is null on the last page",
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
    const { state, limit, after } = c.req.valid("query");
    const { db, config } = c.var.services;
    const items = await listOutbox(db, config.CACHE_PREFIX, { state, limit, afterId: after });
    c.header("Cache-Control", "no-store");
    const last = items.at(-1);
    return c.json({ items, nextCursor: items.length === limit && last ? last.id : null }, 200);
  },
);

/** The row's 404 or 409 when the action found nothing to do. */
function expectDone(action: RowAction, id: number): void {
  if (action === "missing") throw new HttpError(404, "not_found", `No outbox row ${id}`);
  if (action === "processed") {
    throw new HttpError(
      409,
      "conflict",
      `Outbox row ${id} is settled already (applied or discarded)`,
    );
  }
}

const rowResponses = {
  404: errorContent("No outbox row with this id (under this deployment's CACHE_PREFIX)"),
  409: errorContent("The row is settled already (applied or discarded)"),
};

adminOutboxRoutes.openapi(
  createRoute({
    method: "post",
    path: "/admin/outbox/{id}/retry",
    tags: ["admin"],
    security,
    summary: "Give a row back to the drains (attempts reset): the next cron tick applies it",
    request: { params: rowParams },
    responses: {
      200: {
        description: "Pending again, with no attempt charged",
        content: {
          "application/json": {
            schema: z.object({ id: z.number().int(), retried: z.literal(true) }),
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
    expectDone(await retryRow(db, config.CACHE_PREFIX, id), id);
    return c.json({ id, retried: true as const }, 200);
  },
);

adminOutboxRoutes.openapi(
  createRoute({
    method: "delete",
    path: "/admin/outbox/{id}",
    tags: ["admin"],
    security,
    summary: "Discard a row without applying it (it stays in the table, marked discarded)",
    request: { params: rowParams },
    responses: {
      200: {
        description: "Settled: out of the lag and the parked count",
        content: {
          "application/json": {
            schema: z.object({ id: z.number().int(), discarded: z.literal(true) }),
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
    expectDone(await discardRow(db, config.CACHE_PREFIX, id), id);
    return c.json({ id, discarded: true as const }, 200);
  },
);
