import { createRoute, z } from "@hono/zod-openapi";
import { isStorableText } from "../../db/text";
import { getUser, USER_TIERS, updateUser } from "../../domain/users";
import { cachedJson, etagOf, notFound, writtenJson } from "../cache-response";
import { HttpError } from "../errors";
import { rateLimit } from "../middleware/rate-limit";
import { router } from "../openapi";
import {
  errorContent,
  idParams,
  ifMatchHeader,
  nameText,
  preconditionMessage,
  rateLimitedResponse,
  rateLimitHeaders,
  versionCondition,
} from "../schemas";

const userSchema = z
  .object({
    id: z.number().int(),
    email: z.string(),
    name: z.string(),
    tier: z.string().openapi({ example: "premium" }),
    version: z.number().int().openapi({
      description: "Bumped by every write; the ETag is v<version>.<digest of the body>",
    }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("User");

const userPatchSchema = z
  .strictObject({
    name: nameText().optional(),
    // Lower-cased so the unique constraint also catches Alice@ vs alice@.
    email: z
      .email()
      .max(254)
      .refine(isStorableText, "must not contain U+0000 or unpaired surrogates")
      .toLowerCase()
      .optional(),
    tier: z.enum(USER_TIERS).optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, {
    message: "Give at least one of name, email, tier",
  })
  .openapi("UserPatch");

const getUserRoute = createRoute({
  method: "get",
  path: "/users/{id}",
  tags: ["users"],
  summary: "A user, read through the cache (ETag / If-None-Match supported)",
  request: { params: idParams() },
  responses: {
    200: {
      description: "The user; X-Cache says where it came from",
      content: { "application/json": { schema: userSchema } },
    },
    304: { description: "If-None-Match names the current version" },
    412: {
      description: "If-Match does not name the current ETag (current ETag in the header)",
      content: errorContent,
    },
    400: { description: "Malformed id", content: errorContent },
    404: { description: "No such user", content: errorContent },
  },
});

const patchUserRoute = createRoute({
  method: "patch",
  path: "/users/{id}",
  tags: ["users"],
  summary: "Update a user; the new value is written through to the cache before the response",
  middleware: [rateLimit("writes")],
  request: {
    params: idParams(),
    headers: ifMatchHeader,
    body: { required: true, content: { "application/json": { schema: userPatchSchema } } },
  },
  responses: {
    200: {
      description: "The updated user, exactly as now cached",
      headers: rateLimitHeaders,
      content: { "application/json": { schema: userSchema } },
    },
    400: { description: "Invalid id or body", content: errorContent },
    404: { description: "No such user", content: errorContent },
    409: { description: "The email belongs to another user", content: errorContent },
    412: {
      description:
        "If-Match does not name the current version, or If-None-Match names it (`*`: it exists); the current ETag is in the header",
      content: errorContent,
    },
    429: rateLimitedResponse,
  },
});

export const usersRoutes = router()
  .openapi(getUserRoute, async (c) => {
    const { id } = c.req.valid("param");
    const services = c.var.services;
    const result = await getUser(services, id, services.config.CACHE_CONSISTENCY.users);
    if (result.value === null) return notFound(c, result, `user ${id}`) as never;
    // Personal data: the browser may keep it, no shared cache may.
    return (await cachedJson(c, result, {
      validator: "version+content",
      audience: "private",
    })) as never;
  })
  .openapi(patchUserRoute, async (c) => {
    const { id } = c.req.valid("param");
    const expected = versionCondition(c);
    const outcome = await updateUser(c.var.services, id, c.req.valid("json"), expected);
    if (!outcome.ok) {
      switch (outcome.reason) {
        case "not_found":
          throw new HttpError(404, "not_found", `No user ${id}`);
        case "version_mismatch":
          // The current ETag in the header too, as a product's 412 has it.
          c.header("ETag", etagOf(outcome.currentVersion));
          throw new HttpError(
            412,
            "precondition_failed",
            preconditionMessage(c, "user", id, outcome.currentVersion),
            { currentVersion: outcome.currentVersion, etag: etagOf(outcome.currentVersion) },
          );
        case "email_taken":
          throw new HttpError(409, "email_taken", `${outcome.email} belongs to another user`);
      }
    }
    return (await writtenJson(c, outcome.user, 200, "version+content")) as never;
  });
