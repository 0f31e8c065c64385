import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import {
  insertProduct,
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  readProduct,
  readProductPage,
  softDeleteProduct,
  updateProduct,
  WriteRefused,
} from "../../domain/products";
import { commitWrite } from "../../domain/write";
import { cachedJson, etagFor, etagOf, notFound, writtenJson } from "../cache-response";
import type { AppEnv } from "../context";
import { errorResponse } from "../errors";
import { rateLimit } from "../middleware/rate-limit";
import { router } from "../openapi";
import {
  errorContent,
  errorResponses,
  errorSchema,
  idParams,
  ifMatchHeader,
  MAX_ID,
  nameText,
  positiveInt,
  preconditionMessage,
  rateLimitedResponse,
  rateLimitHeaders,
  storableText,
  versionCondition,
} from "../schemas";

// ---------------------------------------------------------------- write failures (shared with categories.ts)

/** Postgres SQLSTATE of a (drizzle-wrapped) driver error. */
function sqlState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    if (typeof current === "object" && "code" in current && typeof current.code === "string") {
      if (/^[0-9A-Z]{5}$/.test(current.code)) return current.code;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A product's write failure: as `writeFailure`, with a 412's ETag the one a GET of the product
 * answers now (`"v<n>.<digest>"`, read through the cache: one Redis read, usually a hit), so a
 * client can send it back in If-Match or If-None-Match as it is; the version alone (`"v<n>"`,
 * which writes accept too) when that read fails or finds an entry older than the version the
 * write was refused against.
 */
export async function productWriteFailure(
  c: Context<AppEnv>,
  error: unknown,
  id: number,
): Promise<Response> {
  let etag: string | undefined;
  if (error instanceof WriteRefused && error.reason === "version_mismatch") {
    try {
      const { cache, db } = c.var.services;
      const current = await readProduct(cache, db, id);
      // Not an entry older than the version this write lost to: the write that won may not
      // have invalidated it yet, and its tag would be the one the client just sent (a retry
      // with it failed again until the invalidation landed; found by an audit). Then the
      // version's own tag, which writes accept as well.
      if (current.value && (current.version ?? -1) >= (error.current ?? 0)) {
        etag =
          (await etagFor("version+content", current.version, JSON.stringify(current.value))) ??
          undefined;
      }
    } catch {
      // The version's tag below still names the current version.
    }
  }
  return writeFailure(c, error, "product", id, etag);
}

/**
 * Maps a refused or failed write to the error shape:
 * - not_found -> 404; version_mismatch (If-Match) -> 412 with the current ETag;
 * - unknown category -> 422 `invalid_reference` with `details.issues` on `categoryId` (the body
 *   is well-formed, it names something that does not exist);
 * - unique violation -> 409 `conflict`; anything else is rethrown (500).
 */
export function writeFailure(
  c: Context,
  error: unknown,
  entity: string,
  id?: number,
  currentEtag?: string,
): Response {
  if (error instanceof WriteRefused) {
    if (error.reason === "not_found") {
      return errorResponse(c, 404, "not_found", `No ${entity} ${id}`);
    }
    if (error.reason === "version_mismatch") {
      const etag = currentEtag ?? (error.current === undefined ? undefined : etagOf(error.current));
      if (etag) c.header("ETag", etag);
      const message = preconditionMessage(c, entity, id, error.current);
      return errorResponse(c, 412, "precondition_failed", message, {
        currentVersion: error.current,
      });
    }
    return unknownCategory(c);
  }
  const state = sqlState(error);
  if (state === "23505") {
    return errorResponse(c, 409, "conflict", `A ${entity} with this sku already exists`);
  }
  if (state === "23503") return unknownCategory(c);
  if (state === "23514") {
    return errorResponse(c, 400, "validation_failed", "A value is out of range", {
      target: "json",
      issues: [{ path: "(root)", message: "violates a database constraint" }],
    });
  }
  throw error;
}

function unknownCategory(c: Context): Response {
  return errorResponse(c, 422, "invalid_reference", "categoryId: no such category", {
    target: "json",
    issues: [{ path: "categoryId", message: "No category with this id" }],
  });
}

/** cachedJson returns a plain Response; the OpenAPI handler types want their typed one. */
export const untyped = (response: Response) => response as never;

// ---------------------------------------------------------------- schemas

const categoryRefSchema = z.object({ id: z.number().int(), slug: z.string(), name: z.string() });

const productSchema = z
  .object({
    id: z.number().int(),
    sku: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    categoryId: z.number().int(),
    category: categoryRefSchema,
    priceCents: z.number().int(),
    currency: z.string(),
    stock: z.number().int(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Product");

const productSummarySchema = z
  .object({
    id: z.number().int(),
    sku: z.string(),
    name: z.string(),
    priceCents: z.number().int(),
    currency: z.string(),
    categoryId: z.number().int(),
  })
  .openapi("ProductSummary");

const productPageSchema = z
  .object({ items: z.array(productSummarySchema), nextCursor: z.number().int().nullable() })
  .openapi("ProductPage");

const fields = {
  name: nameText(),
  description: storableText().max(5000).nullable(),
  categoryId: z.number().int().min(1).max(MAX_ID),
  priceCents: z.number().int().min(0).max(MAX_ID),
  currency: z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code such as USD"),
  stock: z.number().int().min(0).max(MAX_ID),
};

const createProductSchema = z
  .strictObject({
    sku: storableText()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, . _ - (no spaces)"),
    name: fields.name,
    description: fields.description.optional(),
    categoryId: fields.categoryId,
    priceCents: fields.priceCents,
    currency: fields.currency.optional(),
    stock: fields.stock.optional(),
  })
  .openapi("NewProduct");

const patchProductSchema = z
  .strictObject({
    name: fields.name.optional(),
    description: fields.description.optional(),
    categoryId: fields.categoryId.optional(),
    priceCents: fields.priceCents.optional(),
    currency: fields.currency.optional(),
    stock: fields.stock.optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, {
    message: "at least one field to change is required (sku cannot change)",
  })
  .openapi("ProductPatch");

const listQuery = z.object({
  category: positiveInt("category").optional(),
  // Canonical only (no leading zeros, no sign): one spelling per position, so one cache key.
  cursor: positiveInt("cursor", {
    pattern: /^[1-9]\d{0,9}$/,
    message:
      "cursor must be the nextCursor of a previous page (a positive integer, no leading zeros)",
  })
    .optional()
    .openapi({ type: "string", example: "20" }),
  limit: z
    .string()
    .regex(/^\d{1,10}$/, `limit must be an integer from 1 to ${LIST_MAX_LIMIT}`)
    .transform(Number)
    .pipe(z.number().int().min(1).max(LIST_MAX_LIMIT))
    .optional()
    .openapi({ type: "string", example: String(LIST_DEFAULT_LIMIT) }),
});

const cacheHeaders = {
  "X-Cache": { schema: { type: "string" as const }, description: "HIT | STALE | MISS | BYPASS" },
  Age: { schema: { type: "string" as const }, description: "Seconds since the entry was loaded" },
  "Cache-Control": { schema: { type: "string" as const }, description: "no-cache: revalidate" },
  ETag: { schema: { type: "string" as const } },
};

// ---------------------------------------------------------------- routes

export const productsRoutes = router();

productsRoutes.openapi(
  createRoute({
    method: "get",
    path: "/products",
    tags: ["products"],
    summary: "Product summaries, keyset-paginated by id (no stock)",
    request: { query: listQuery },
    responses: {
      200: {
        description: "One page; pass `nextCursor` as `cursor` for the next",
        headers: cacheHeaders,
        content: { "application/json": { schema: productPageSchema } },
      },
      400: errorResponses[400],
    },
  }),
  async (c) => {
    const q = c.req.valid("query");
    const { cache, db, config } = c.var.services;
    const result = await readProductPage(
      cache,
      db,
      { category: q.category, cursor: q.cursor, limit: q.limit ?? LIST_DEFAULT_LIMIT },
      config.CACHE_CONSISTENCY.products,
    );
    return untyped(await cachedJson(c, result, { validator: "content" }));
  },
);

productsRoutes.openapi(
  createRoute({
    method: "get",
    path: "/products/{id}",
    tags: ["products"],
    summary:
      'One product with its category (ETag "v<version>.<digest of the body>"; If-None-Match -> 304)',
    request: { params: idParams("id") },
    responses: {
      200: {
        description: "The product",
        headers: {
          ...cacheHeaders,
          ETag: { schema: { type: "string" }, description: '"v<version>.<digest>"' },
        },
        content: { "application/json": { schema: productSchema } },
      },
      304: { description: "If-None-Match names the current ETag" },
      412: {
        description: "If-Match does not name the current ETag (current ETag in the header)",
        content: errorContent,
      },
      ...errorResponses,
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const { cache, db, config } = c.var.services;
    const result = await readProduct(cache, db, id, config.CACHE_CONSISTENCY.products);
    if (result.value === null) return untyped(notFound(c, result, `product ${id}`));
    return untyped(await cachedJson(c, result, { validator: "version+content" }));
  },
);

productsRoutes.openapi(
  createRoute({
    method: "post",
    path: "/products",
    tags: ["products"],
    summary: "Create a product",
    middleware: [rateLimit("writes")],
    request: {
      body: { required: true, content: { "application/json": { schema: createProductSchema } } },
    },
    responses: {
      201: {
        description: "Created; ETag is its version",
        headers: rateLimitHeaders,
        content: { "application/json": { schema: productSchema } },
      },
      400: errorResponses[400],
      409: {
        description: "The sku is taken",
        content: { "application/json": { schema: errorSchema } },
      },
      422: {
        description: "categoryId names no category (`invalid_reference`, `details.issues`)",
        content: { "application/json": { schema: errorSchema } },
      },
      429: rateLimitedResponse,
    },
  }),
  async (c) => {
    const input = c.req.valid("json");
    const services = c.var.services;
    try {
      const { result } = await commitWrite(services, {
        origin: "POST /products",
        change: (tx) => insertProduct(tx, input),
      });
      c.header("Location", `/products/${result.id}`);
      return untyped(await writtenJson(c, result, 201, "version+content"));
    } catch (error) {
      return untyped(writeFailure(c, error, "product"));
    }
  },
);

productsRoutes.openapi(
  createRoute({
    method: "patch",
    path: "/products/{id}",
    tags: ["products"],
    summary: "Change a product (optional If-Match)",
    middleware: [rateLimit("writes")],
    request: {
      params: idParams("id"),
      headers: ifMatchHeader,
      body: { required: true, content: { "application/json": { schema: patchProductSchema } } },
    },
    responses: {
      200: {
        description: "The new version; ETag is its version",
        headers: rateLimitHeaders,
        content: { "application/json": { schema: productSchema } },
      },
      ...errorResponses,
      412: {
        description:
          "If-Match does not name the current version, or If-None-Match names it (`*`: it exists); the current ETag is in the header",
        content: { "application/json": { schema: errorSchema } },
      },
      422: {
        description: "categoryId names no category",
        content: { "application/json": { schema: errorSchema } },
      },
      429: rateLimitedResponse,
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const patch = c.req.valid("json");
    const condition = versionCondition(c);
    try {
      const { result } = await commitWrite(c.var.services, {
        origin: "PATCH /products/:id",
        change: (tx) => updateProduct(tx, id, patch, condition),
      });
      return untyped(await writtenJson(c, result, 200, "version+content"));
    } catch (error) {
      return untyped(await productWriteFailure(c, error, id));
    }
  },
);

productsRoutes.openapi(
  createRoute({
    method: "delete",
    path: "/products/{id}",
    tags: ["products"],
    summary: "Soft-delete a product (optional If-Match)",
    middleware: [rateLimit("writes")],
    request: { params: idParams("id"), headers: ifMatchHeader },
    responses: {
      204: { description: "Deleted", headers: rateLimitHeaders },
      ...errorResponses,
      412: {
        description:
          "If-Match does not name the current version, or If-None-Match names it (`*`: it exists); the current ETag is in the header",
        content: { "application/json": { schema: errorSchema } },
      },
      429: rateLimitedResponse,
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const condition = versionCondition(c);
    try {
      await commitWrite(c.var.services, {
        origin: "DELETE /products/:id",
        change: (tx) => softDeleteProduct(tx, id, condition),
      });
      return c.body(null, 204);
    } catch (error) {
      return untyped(await productWriteFailure(c, error, id));
    }
  },
);
