import { createRoute, z } from "@hono/zod-openapi";
import { MAX_RESERVATION, reserveStock } from "../../domain/inventory";
import { WriteRefused } from "../../domain/products";
import { HttpError } from "../errors";
import { rateLimit } from "../middleware/rate-limit";
import { router } from "../openapi";
import {
  errorContent,
  idParams,
  ifMatchHeader,
  rateLimitedResponse,
  rateLimitHeaders,
  versionCondition,
} from "../schemas";
import { productWriteFailure, untyped } from "./products";

const reserveBodySchema = z
  .strictObject({
    quantity: z.number().int().min(1).max(MAX_RESERVATION).openapi({ example: 2 }),
  })
  .openapi("ReserveRequest");

const reservationSchema = z
  .object({
    productId: z.number().int(),
    reserved: z.number().int(),
    remaining: z.number().int(),
    version: z.number().int().openapi({ description: "The product's new version (ETag v<n>)" }),
  })
  .openapi("Reservation");

const reserveRoute = createRoute({
  method: "post",
  path: "/products/{id}/reserve",
  tags: ["inventory"],
  summary: "Reserve stock atomically; never oversells, and the cached product is invalidated",
  middleware: [rateLimit("writes")],
  request: {
    params: idParams(),
    headers: ifMatchHeader,
    body: { required: true, content: { "application/json": { schema: reserveBodySchema } } },
  },
  responses: {
    200: {
      description: "Reserved; `remaining` is the stock left after this reservation",
      headers: rateLimitHeaders,
      content: { "application/json": { schema: reservationSchema } },
    },
    400: { description: "Invalid id or quantity", content: errorContent },
    404: { description: "No such product (or it was deleted)", content: errorContent },
    409: { description: "Not enough stock left (insufficient_stock)", content: errorContent },
    412: {
      description:
        "If-Match does not name the current version, or If-None-Match names it (`*`: it exists); the current ETag is in the header",
      content: errorContent,
    },
    429: rateLimitedResponse,
  },
});

export const inventoryRoutes = router().openapi(reserveRoute, async (c) => {
  const { id } = c.req.valid("param");
  const { quantity } = c.req.valid("json");
  const outcome = await reserveStock(c.var.services, id, quantity, versionCondition(c));
  if (!outcome.ok) {
    if (outcome.reason === "not_found") throw new HttpError(404, "not_found", `No product ${id}`);
    if (outcome.reason === "version_mismatch") {
      // The same 412 as PATCH and DELETE of the product: the current ETag in the header.
      const refused = new WriteRefused("version_mismatch", outcome.current);
      return untyped(await productWriteFailure(c, refused, id));
    }
    throw new HttpError(
      409,
      "insufficient_stock",
      `Cannot reserve ${outcome.requested} of product ${id}: only ${outcome.available} left`,
      { available: outcome.available, requested: outcome.requested },
    );
  }
  c.header("Cache-Control", "no-store");
  return c.json(
    {
      productId: outcome.productId,
      reserved: outcome.reserved,
      remaining: outcome.remaining,
      version: outcome.version,
    },
    200,
  );
});
