import type { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "./context";
import { errorResponse } from "./errors";
import { contentType } from "./middleware/content-type";
import { catchAll, notFoundOrNotAllowed, onError } from "./middleware/errors";
import { services } from "./middleware/services";
import { router } from "./openapi";
import { completeDocument } from "./openapi-complete";
import { adminRoutes } from "./routes/admin";
import { adminOutboxRoutes } from "./routes/admin-outbox";
import { categoriesRoutes } from "./routes/categories";
import { dashboardRoutes } from "./routes/dashboard";
import { docsRoutes } from "./routes/docs";
import { health } from "./routes/health";
import { inventoryRoutes } from "./routes/inventory";
import { productsRoutes } from "./routes/products";
import { sessionsRoutes } from "./routes/sessions";
import { usersRoutes } from "./routes/users";

/** Request bodies above this are refused with 413 before they are read into memory. */
export const MAX_BODY_BYTES = 64 * 1024;

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function createApp(): OpenAPIHono<AppEnv> {
  const app = router();
  app.onError(onError);
  // 405 + Allow for a known path under another method, derived from the routes registered below.
  app.notFound(notFoundOrNotAllowed(() => app.routes));
  // First, so every throw of the chain below reaches onError as an Error.
  app.use("*", catchAll);
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) =>
        errorResponse(c, 413, "payload_too_large", `Request body over ${MAX_BODY_BYTES} bytes`),
    }),
  );
  app.use("*", contentType);
  // Write responses are never stored (README, HTTP caching): a DELETE's 204 sets nothing itself.
  app.use("*", async (c, next) => {
    await next();
    if (!SAFE_METHODS.has(c.req.method) && !c.res.headers.has("cache-control")) {
      c.header("Cache-Control", "no-store");
    }
  });
  app.use("*", services);
  app.route("/", health);
  app.route("/", productsRoutes);
  app.route("/", inventoryRoutes);
  app.route("/", categoriesRoutes);
  app.route("/", usersRoutes);
  app.route("/", sessionsRoutes);
  // Before adminRoutes: the dashboard page is public, its data is not.
  app.route("/", dashboardRoutes);
  app.route("/", adminRoutes);
  app.route("/", adminOutboxRoutes);
  const info = {
    openapi: "3.1.0",
    info: {
      title: "edgecache catalogue API",
      version: "0.1.0",
      description:
        "Product catalogue served through an edge cache (Upstash Redis in front of Neon Postgres). Cached responses carry X-Cache, Age, ETag and Cache-Control. A method a path does not serve answers 405 with Allow.",
    },
  };
  // Built once per app: the routes do not change after this. With the statuses the app-wide
  // middleware adds (openapi-complete.ts), which no route declares itself.
  let document: ReturnType<typeof app.getOpenAPI31Document> | undefined;
  app.get("/openapi.json", (c) => {
    document ??= completeDocument(app.getOpenAPI31Document(info));
    return c.json(document);
  });
  app.route("/", docsRoutes);
  return app;
}
