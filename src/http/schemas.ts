import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { VersionCondition } from "../domain/conditions";

/** Largest Postgres `integer`: a bigger id would make the query fail, i.e. a 500. */
export const MAX_ID = 2_147_483_647;

/**
 * A path or query value that must be a positive int4: "42" -> 42; "0", "-1", "abc", "1.5" -> 400.
 * `spelling` narrows which strings are accepted (and what a refused one is told).
 *
 * @example
 *   positiveInt("id"); // "007" -> 7
 *   positiveInt("cursor", { pattern: /^[1-9]\d{0,9}$/, message: "cursor must be canonical" });
 */
export const positiveInt = (
  what: string,
  spelling: { pattern: RegExp; message: string } = {
    pattern: /^\d{1,10}$/,
    message: `${what} must be a positive integer`,
  },
) =>
  z
    .string()
    .regex(spelling.pattern, spelling.message)
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, `${what} must be a positive integer`)
        .max(MAX_ID, `${what} must be at most ${MAX_ID}`),
    )
    .openapi({ type: "string", example: "42" });

// U+0000 anywhere, or a UTF-16 surrogate without its partner (a JSON body can carry both as
// \u escapes): src/db/text.ts.
import { isStorableText } from "../db/text";

/**
 * A string field that goes into Postgres. Postgres `text` cannot hold U+0000 (the query fails,
 * which used to be a 500) and the driver's UTF-8 encoding silently replaces a lone surrogate
 * with U+FFFD (the stored value differs from the one acknowledged); both are a 400 on the field.
 * Chain `.min`/`.max`/`.regex` after it as on `z.string()`.
 *
 * @example
 * const body = z.strictObject({ name: storableText().min(1).max(200) });
 * body.safeParse({ name: "a\u0000b" }).error?.issues[0]; // { path: ["name"], message: "must not contain…" }
 */
export const storableText = () =>
  z
    .string()
    .refine(
      isStorableText,
      "must not contain U+0000 (NUL) or unpaired UTF-16 surrogates: Postgres text cannot store them",
    );

/**
 * A name: storable text of 1–200 characters with at least one that is not whitespace, kept
 * exactly as sent (products, categories and users alike: nothing is trimmed behind the
 * client's back, and a blank name is a 400 everywhere).
 *
 * @example
 * nameText().safeParse("   ").success; // false: "must not be blank"
 * nameText().parse(" Desk ");         // " Desk "
 */
export const nameText = () =>
  storableText()
    .min(1)
    .max(200)
    .refine((s) => s.trim() !== "", "must not be blank");

/** `{id}` path parameter. */
export const idParams = (what = "id") =>
  z.object({ id: positiveInt(what).openapi({ param: { name: "id", in: "path" }, example: "42" }) });

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");

export const errorContent = { "application/json": { schema: errorSchema } };

export const errorResponses = {
  400: {
    description:
      "Validation failed: `details.issues` lists each field (`path`) and what is wrong (`message`)",
    content: errorContent,
  },
  404: { description: "Not found", content: errorContent },
} as const;

export const ifMatchHeader = z.object({
  "if-match": z.string().optional().openapi({
    description:
      'Only write when the current version matches (`"v7"`, a GET\'s ETag such as `"v7.<digest>"`, weakened `W/"v7.<digest>"` too, a list, or `*`); 412 otherwise',
    example: '"v3"',
  }),
  "if-none-match": z.string().optional().openapi({
    description:
      "Only write when the current version is none of these (compared weakly; `*`: only if it does not exist, so never for an existing entity); 412 otherwise",
    example: '"v3"',
  }),
});

/**
 * The precondition of a write (see VersionCondition): null without If-Match or If-None-Match.
 * If-Match `*` allows any existing version; otherwise the versions named by `"v<n>"` or
 * `"v<n>.<digest>"` tags, weak ones (`W/`) included; foreign tags never match, so a list of
 * only those ends in 412. RFC 9110 compares If-Match strongly, so that a weak tag (which may
 * name another representation of the same meaning) cannot stand for the exact one. Here the
 * condition is the row's version, which `v<n>` names exactly whatever happened to the bytes,
 * and Cloudflare weakens every strong ETag it compresses (without a "Respect Strong ETags"
 * cache rule, and with one for some encodings): a client echoing the tag it was given got a
 * 412 on every conditional write (found by an audit). If-None-Match `*` on a write means "only if it
 * does not exist yet" (RFC 9110 §13.1.2): every write here changes an existing row, so no
 * version may match (412 when the row exists, 404 when it does not). Other If-None-Match tags
 * name versions the write must not apply to, compared weakly (`W/` ignored); tags that name no
 * version (a list's `"c.…"`) match nothing.
 *
 * A product's ETag is `"v<n>.<digest>"`: the digest covers its embedded category too, but a
 * write changes only the product's own row, so the condition is its version. A client holding
 * the product from before a category rename may still PATCH it (the rename did not touch what
 * it is changing); it cannot overwrite a newer version of the product itself.
 */
export function versionCondition(c: Context): VersionCondition | null {
  const none = c.req.header("if-none-match");
  const header = c.req.header("if-match");
  if (header === undefined && none === undefined) return null;
  const noneTags = none === undefined ? [] : tagsOf(none);
  if (noneTags.includes("*")) return { only: [], not: [] };
  const not = noneTags.flatMap(versionOfTag);
  if (header === undefined) return { only: null, not };
  return { only: ifMatchVersions(header), not };
}

/**
 * Why a write's precondition failed on an entity at version `current`, naming the header whose
 * check failed (If-Match is evaluated first, RFC 9110 §13.2.2). Read from the headers rather
 * than from `versionCondition`, which folds `If-None-Match: *` into an empty `only` as if
 * If-Match had named nothing.
 *
 * @example
 *   // If-Match: "v1", If-None-Match: "v1", user 7 at version 1:
 *   preconditionMessage(c, "user", 7, 1); // "If-None-Match names the current version of user 7"
 */
export function preconditionMessage(
  c: Context,
  entity: string,
  id: number | undefined,
  current: number | undefined,
): string {
  const what = id === undefined ? entity : `${entity} ${id}`;
  const ifMatch = c.req.header("if-match");
  const only = ifMatch === undefined ? null : ifMatchVersions(ifMatch);
  if (only !== null && (current === undefined || !only.includes(current))) {
    return `If-Match does not name the current version of ${what}`;
  }
  const none = c.req.header("if-none-match");
  if (none !== undefined && tagsOf(none).includes("*")) {
    return `If-None-Match: * asks for ${what} not to exist, and it does`;
  }
  return `If-None-Match names the current version of ${what}`;
}

/** The entity tags of an If-Match / If-None-Match list, `*` included. */
function tagsOf(header: string): string[] {
  return header.split(",").map((t) => t.trim());
}

/** The versions an If-Match names; null for `*` (any existing version). */
function ifMatchVersions(header: string): number[] | null {
  const tags = tagsOf(header);
  return tags.includes("*") ? null : tags.flatMap(versionOfTag);
}

/**
 * The version a `"v<n>"` / `"v<n>.<digest>"` tag names, weak (`W/`) or not: [n], or [] for any
 * other tag.
 */
function versionOfTag(tag: string): number[] {
  const m = /^(?:W\/)?"v([1-9]\d{0,9})(?:\.[A-Za-z0-9_-]+)?"$/.exec(tag);
  const version = Number(m?.[1]);
  return m && version <= MAX_ID ? [version] : [];
}

// ---------------------------------------------------------------- rate limits (middleware/rate-limit.ts)

const headerInt = (description: string) => ({
  schema: { type: "integer" as const, minimum: 0 },
  description,
});

/** RateLimit headers (draft-ietf-httpapi-ratelimit-headers-06 form) on a rate-limited route. */
export const rateLimitHeaders = {
  "RateLimit-Limit": headerInt("Requests this client may make in the current window"),
  "RateLimit-Remaining": headerInt("Requests left in the current window"),
  "RateLimit-Reset": headerInt("Seconds until the window resets"),
  "RateLimit-Policy": {
    schema: { type: "string" as const, example: "60;w=60" },
    description: "The policy: `<limit>;w=<window seconds>`",
  },
};

/** The 429 of a rate-limited route. */
export const rateLimitedResponse = {
  description:
    "Rate limited (`rate_limited`): this client (CF-Connecting-IP) spent its budget for the window. `details` has `limit`, `remaining` and `reset` (Unix ms); retry after `Retry-After` seconds.",
  headers: {
    "Retry-After": headerInt("Seconds until the window resets and a retry can succeed"),
    ...rateLimitHeaders,
  },
  content: errorContent,
};
