import { Hono } from "hono";
import type { AppEnv } from "../context";
import { docsFiles, docsPage } from "../docs/assets";
import { servePages } from "../static-pages";

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

servePages(docsRoutes, "/docs", { page: docsPage, files: docsFiles, csp: CSP, what: "docs" });
