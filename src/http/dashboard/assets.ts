import uplotJs from "uplot/dist/uPlot.iife.min.js";
import uplotCss from "uplot/dist/uPlot.min.css";
import type { Asset } from "../static-pages";
import appJs from "./app.client.js";
import page from "./page.html";

/**
 * The dashboard's files, bundled into the Worker as text (wrangler.toml `[[rules]]` type Text):
 * the page, its script, and uPlot from node_modules. Nothing is fetched from a CDN.
 */
export const dashboardPage: Asset = { body: page, type: "text/html; charset=utf-8" };

/** Served under /admin/dashboard/{name}. */
export const dashboardFiles: Readonly<Record<string, Asset>> = {
  "app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "uplot.js": { body: uplotJs, type: "text/javascript; charset=utf-8" },
  "uplot.css": { body: uplotCss, type: "text/css; charset=utf-8" },
};
