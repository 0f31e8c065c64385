/**
 * The answers every route can give that no route declares itself, added to the generated
 * OpenAPI document: they come from the app-wide middleware and error handler (README,
 * "Errors"), not from a route's handler. An audit found the contract listing `200` alone for
 * `GET /categories`, which also answers 304, 412 and 503.
 */

interface Response {
  description: string;
  headers?: Record<string, unknown>;
  content?: Record<string, unknown>;
}

interface Operation {
  requestBody?: unknown;
  responses?: Record<string, Response>;
}

/** The part of an OpenAPI document this reads and completes. */
export interface OpenApiDocument {
  paths?: Record<string, Record<string, Operation | unknown>>;
}

const METHODS = new Set(["get", "put", "post", "delete", "patch", "head", "options"]);
const ERROR = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } };
const RETRY_AFTER = {
  "Retry-After": {
    description: "Seconds to wait before retrying",
    schema: { type: "integer", minimum: 1 },
  },
};

/** What a 503 from `path` means, or null when the route answers none (it reports instead). */
function unavailable(path: string): string | null {
  // The dashboard's data: what could be read, with `errors` for the rest (never a 503).
  if (path === "/admin/stats") return null;
  if (path.startsWith("/sessions")) return "`redis_unavailable`: sessions live only in Redis";
  if (path.startsWith("/admin/")) {
    return "`redis_unavailable`, `database_unavailable` or `queue_unavailable` (named in the body)";
  }
  return "`database_unavailable`: Postgres unreachable or past its deadline, and no cached value to serve";
}

/**
 * `doc` with the statuses the middleware adds to each operation, where the route did not
 * declare them itself: 500 everywhere; 413 and 415 with a request body; 503 with Retry-After
 * by path (see `unavailable`); 304 and 412 on a cached read (its 200 carries `X-Cache`).
 * 405 belongs to paths, not operations (`Allow` lists a path's methods): OpenAPI cannot say it.
 *
 * @example
 *   app.get("/openapi.json", (c) => c.json(completeDocument(app.getOpenAPI31Document(info))));
 */
export function completeDocument<D extends object>(doc: D): D {
  for (const [path, item] of Object.entries((doc as OpenApiDocument).paths ?? {})) {
    for (const [method, value] of Object.entries(item)) {
      if (!METHODS.has(method) || typeof value !== "object" || value === null) continue;
      const operation = value as Operation;
      operation.responses ??= {};
      const responses = operation.responses;
      const add = (status: number, response: Response) => {
        responses[String(status)] ??= response;
      };
      if (method === "get" && responses["200"]?.headers?.["X-Cache"] !== undefined) {
        add(304, { description: "If-None-Match names the current ETag: no body" });
        add(412, {
          description: "If-Match names none of the current ETags (the current one is in `ETag`)",
          content: ERROR,
        });
      }
      if (operation.requestBody !== undefined) {
        add(413, { description: "`payload_too_large`: a body over 64 KiB", content: ERROR });
        add(415, {
          description:
            "`unsupported_media_type`: not `application/json`, a charset other than utf-8, or a Content-Encoding",
          content: ERROR,
        });
      }
      const why = unavailable(path);
      if (why) add(503, { description: why, headers: RETRY_AFTER, content: ERROR });
      add(500, {
        description: "`internal_error` (the request id is in the logs) or `config_invalid`",
        content: ERROR,
      });
    }
  }
  return doc;
}
