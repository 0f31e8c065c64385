import bundleCss from "swagger-ui-dist/swagger-ui.css";
import bundleJs from "swagger-ui-dist/swagger-ui-bundle.js";
import type { Asset } from "../static-pages";
import initJs from "./init.client.js";
import page from "./page.html";

/**
 * /docs: Swagger UI from node_modules (swagger-ui-dist, an exact version in package.json),
 * bundled as text like the dashboard's uPlot. It was loaded from a CDN, unpinned and without
 * integrity, on the origin whose dashboard keeps the admin token in sessionStorage; and
 * without the internet the page stayed blank.
 */
export const docsPage: Asset = { body: page, type: "text/html; charset=utf-8" };

/** Served under /docs/{name}. */
export const docsFiles: Readonly<Record<string, Asset>> = {
  "swagger-ui-bundle.js": { body: bundleJs, type: "text/javascript; charset=utf-8" },
  "swagger-ui.css": { body: bundleCss, type: "text/css; charset=utf-8" },
  "init.js": { body: initJs, type: "text/javascript; charset=utf-8" },
};
