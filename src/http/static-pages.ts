import type { Hono } from "hono";
import { etag } from "hono/etag";
import type { AppEnv } from "./context";
import { HttpError } from "./errors";

/** A file bundled into the Worker as text, and its media type. */
export interface Asset {
  body: string;
  type: string;
}

/**
 * Serves a page at `base` and its files at `base/{name}`, all bundled into the Worker as text
 * (the dashboard, /docs): ETags, revalidated on each load (so a deploy never mixes old and new
 * files), `nosniff`, and on the page `csp` and no referrer. A name not in `files` is a 404
 * naming `base`.
 *
 * @example
 * servePages(routes, "/docs", { page: docsPage, files: docsFiles, csp: CSP, what: "docs" });
 */
export function servePages(
  routes: Hono<AppEnv>,
  base: string,
  site: { page: Asset; files: Readonly<Record<string, Asset>>; csp: string; what: string },
): void {
  routes.use(base, etag());
  routes.use(`${base}/*`, etag());

  routes.get(base, (c) => {
    c.header("Content-Type", site.page.type);
    c.header("Cache-Control", "no-cache");
    c.header("Content-Security-Policy", site.csp);
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    return c.body(site.page.body);
  });

  routes.get(`${base}/:file`, (c) => {
    const name = c.req.param("file");
    const file = Object.hasOwn(site.files, name) ? site.files[name] : undefined;
    if (!file) throw new HttpError(404, "not_found", `No ${site.what} file ${name}: try ${base}`);
    c.header("Content-Type", file.type);
    c.header("Cache-Control", "no-cache");
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(file.body);
  });
}
