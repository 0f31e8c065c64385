import { createRoute, z } from "@hono/zod-openapi";
import { readCategories, readCategory, updateCategory } from "../../domain/categories";
import { commitWrite } from "../../domain/write";
import { cachedJson, notFound, writtenJson } from "../cache-response";
import { rateLimit } from "../middleware/rate-limit";
import { router } from "../openapi";
import {
  errorContent,
  errorResponses,
  errorSchema,
  idParams,
  ifMatchHeader,
  nameText,
  rateLimitedResponse,
  rateLimitHeaders,
  storableText,
  versionCondition,
} from "../schemas";
import { untyped, writeFailure } from "./products";

const categorySchema = z
  .object({
    id: z.number().int(),
    slug: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    version: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Category");

const patchCategorySchema = z
  .strictObject({
    name: nameText().optional(),
    description: storableText().max(5000).nullable().optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, {
    message: "at least one field to change is required (name, description)",
  })
  .openapi("CategoryPatch");

const cacheHeaders = {
  "X-Cache": { schema: { type: "string" as const }, description: "HIT | STALE | MISS | BYPASS" },
  Age: { schema: { type: "string" as const } },
  "Cache-Control": { schema: { type: "string" as const } },
};

export const categoriesRoutes = router();

categoriesRoutes.openapi(
  createRoute({
    method: "get",
    path: "/categories",
    tags: ["categories"],
    summary: "Every category",
    responses: {
      200: {
        description: "All categories, by id",
        headers: cacheHeaders,
        content: { "application/json": { schema: z.array(categorySchema) } },
      },
    },
  }),
  async (c) => {
    const { cache, db, config } = c.var.services;
    const result = await readCategories(cache, db, config.CACHE_CONSISTENCY.categories);
    return untyped(await cachedJson(c, result, { validator: "content" }));
  },
);

categoriesRoutes.openapi(
  createRoute({
    method: "get",
    path: "/categories/{id}",
    tags: ["categories"],
    summary: "One category (ETag = v<version>.<digest>; If-None-Match -> 304)",
    request: { params: idParams("id") },
    responses: {
      200: {
        description: "The category",
        headers: { ...cacheHeaders, ETag: { schema: { type: "string" } } },
        content: { "application/json": { schema: categorySchema } },
      },
      304: { description: "If-None-Match names the current version" },
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
    const result = await readCategory(cache, db, id, config.CACHE_CONSISTENCY.categories);
    if (result.value === null) return untyped(notFound(c, result, `category ${id}`));
    return untyped(await cachedJson(c, result, { validator: "version+content" }));
  },
);

categoriesRoutes.openapi(
  createRoute({
    method: "patch",
    path: "/categories/{id}",
    tags: ["categories"],
    summary:
      "Rename or describe a category (optional If-Match); invalidates every product list of it and every product detail embedding it",
    middleware: [rateLimit("writes")],
    request: {
      params: idParams("id"),
      headers: ifMatchHeader,
      body: { required: true, content: { "application/json": { schema: patchCategorySchema } } },
    },
    responses: {
      200: {
        description: "The new version; ETag is v<version>.<digest>",
        headers: rateLimitHeaders,
        content: { "application/json": { schema: categorySchema } },
      },
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
    const patch = c.req.valid("json");
    const condition = versionCondition(c);
    try {
      const { result } = await commitWrite(c.var.services, {
        origin: "PATCH /categories/:id",
        change: (tx) => updateCategory(tx, id, patch, condition),
      });
      return untyped(await writtenJson(c, result, 200, "version+content"));
    } catch (error) {
      return untyped(writeFailure(c, error, "category", id));
    }
  },
);
