import type { Context } from "hono";
import type { CacheResult } from "../cache";
import { etagFor, setCacheHeaders, type Validator } from "../hono";
import { errorResponse } from "./errors";

/**
 * HTTP validators and freshness for cached representations. The shared part (validators,
 * If-None-Match, Cache-Control, `cachedJson`) is `src/hono/response.ts`, the code the
 * `edgecache/hono` package ships, so the app and the package answer alike; this module adds the
 * app's write and 404 answers. Validators are chosen per resource:
 * - `version+content`: `"v7.<digest>"`, for every row (products, categories, users): the digest
 *   changes with any byte of the body, an embedded part (a product's category) or a change of
 *   the representation itself (a release that adds, drops or renames a field: the row's version
 *   does not move, and `"v7"` alone answered 304 to a client holding the previous release's
 *   body until the row was next written; test/workers/deploy-skew.test.ts), and the `v7`
 *   prefix is what If-Match on a write is conditioned on (see `versionCondition` in schemas.ts).
 *   `version` (`"v7"`) is not used here for that reason.
 * - `content`: `"c.<digest>"`, for lists: any change of an item, of the page boundaries or of
 *   the cursor changes the body.
 * A tag bump that leaves the body byte-identical keeps the validator, which is right: nothing
 * the client holds changed.
 */
export { cachedJson, etagFor, etagOf } from "../hono";

/** The JSON of a write's result with its ETag (same validator as the GET) and `no-store`. */
export async function writtenJson(
  c: Context,
  value: { version: number },
  status: 200 | 201,
  validator: Validator,
): Promise<Response> {
  const json = JSON.stringify(value);
  const etag = await etagFor(validator, value.version, json);
  if (etag) c.header("ETag", etag);
  c.header("Cache-Control", "no-store");
  c.header("Content-Type", "application/json");
  return c.body(json, status);
}

/**
 * 404 for an id that does not exist, with X-Cache so a client (and a test) can tell a cached
 * absence (HIT: no Postgres query) from a looked-up one. `no-store`: an absence must not outlive
 * the create that ends it in any cache but ours, whose negative entry the create invalidates.
 */
export function notFound(c: Context, result: CacheResult<unknown>, what: string): Response {
  setCacheHeaders(c, result);
  c.header("Cache-Control", "no-store");
  return errorResponse(c, 404, "not_found", `No ${what}`);
}
