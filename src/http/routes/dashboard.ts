import { Hono } from "hono";
import type { AppEnv } from "../context";
import { dashboardFiles, dashboardPage } from "../dashboard/assets";
import { servePages } from "../static-pages";

/**
 * The operator dashboard: a static page and its script, public because they hold no data. The
 * page asks for the admin token and reads everything from the bearer-guarded /admin/stats.
 * Mounted before the admin routes, so their `/admin/*` auth middleware never sees these paths.
 */
export const dashboardRoutes = new Hono<AppEnv>();

/**
 * The dashboard's public paths, under any method: the admin routes' auth skips them, so a
 * method they do not serve answers 405 with `Allow`, not 401 as if a token would help.
 *
 * @example
 *   isDashboardPath("/admin/dashboard/app.js"); // true
 *   isDashboardPath("/admin/stats");            // false
 */
export const isDashboardPath = (path: string): boolean =>
  path === "/admin/dashboard" || path.startsWith("/admin/dashboard/");

// Scripts only from this origin, data only from this origin, no framing: the token typed into
// the page can go nowhere else.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

servePages(dashboardRoutes, "/admin/dashboard", {
  page: dashboardPage,
  files: dashboardFiles,
  csp: CSP,
  what: "dashboard",
});
