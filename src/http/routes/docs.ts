import { Hono } from "hono";
import { etag } from "hono/etag";
import type { AppEnv } from "../context";
import { docsFiles, docsPage } from "../docs/assets";
import { HttpError } from "../errors";

/**
 * `/docs`: Swagger UI over `/openapi.json`, every file from this Worker. Its scripts may come
 * only from this origin and talk only to it, like the dashboard's on the same origin.
 */
export const docsRoutes = new Hono<AppEnv>();

// Swagger UI styles with inline attributes and shows data: images; nothing else is allowed.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "connect-src 'self'; img-src 'self' data:; font-src 'self' data:; form-action 'none'; " +
  "frame-ancestors 'none'; base-uri 'none'";

docsRoutes.use("/docs", etag());
docsRoutes.use("/docs/*", etag());

docsRoutes.get("/docs", (c) => {
  c.header("Content-Type", docsPage.type);
  c.header("Cache-Control", "no-cache");
  c.header("Content-Security-Policy", CSP);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  return c.body(docsPage.body);
});

docsRoutes.get("/docs/:file", (c) => {
  const name = c.req.param("file");
  const file = Object.hasOwn(docsFiles, name) ? docsFiles[name] : undefined;
  if (!file) throw new HttpError(404, "not_found", `No docs file ${name}: try /docs`);
  c.header("Content-Type", file.type);
  c.header("Cache-Control", "no-cache");
  c.header("X-Content-Type-Options", "nosniff");
  return c.body(file.body);
});
