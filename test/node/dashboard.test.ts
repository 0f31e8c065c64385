import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { unstable_startWorker } from "wrangler";

/**
 * The dashboard in a real browser: Debian's Chromium (never a downloaded build) driven by
 * playwright-core, against the Worker started for real by wrangler (workerd, bundled with
 * wrangler.toml's rules) on the test stack's gateway, WebSocket proxy and database.
 * Saves a screenshot to test-results/dashboard.png; with UPDATE_SCREENSHOTS=1 to docs/dashboard.png,
 * the one the README shows (so a plain `npm test` leaves the tree clean).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
const inCi = Boolean(process.env.CI);
const missing =
  `No Chromium at ${CHROMIUM}: the dashboard browser test needs Debian's chromium ` +
  "(apt-get install -y chromium; .ci/run installs it) or CHROMIUM_PATH set to a Chromium binary.";
if (!haveChromium && !inCi) console.warn(`[dashboard] skipped. ${missing}`);

const root = fileURLToPath(new URL("../..", import.meta.url));
const SCREENSHOT = process.env.UPDATE_SCREENSHOTS
  ? `${root}docs/dashboard.png`
  : `${root}test-results/dashboard.png`;
const stack = inject("stack");
const prefix = `tb${Date.now().toString(36)}`;

/** The little of the DOM the page-side predicate reads. */
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
}
interface PageDocument {
  body: PageElement;
  querySelector(selector: string): PageElement | null;
}

type StartedWorker = Awaited<ReturnType<typeof unstable_startWorker>>;

const text = (value: string) => ({ type: "plain_text" as const, value });

async function startWorker(
  overrides: Record<string, string> = {},
): Promise<{ worker: StartedWorker; url: string }> {
  // No Request.cf download: it needs the internet and only fills request.cf locally.
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
  process.env.WRANGLER_SEND_METRICS = "false";
  const worker = await unstable_startWorker({
    config: `${root}wrangler.toml`,
    // Only the test stack's bindings: never a developer's .dev.vars.
    envFiles: [],
    bindings: {
      UPSTASH_REDIS_REST_URL: text(stack.gatewayUrl),
      UPSTASH_REDIS_REST_TOKEN: text(stack.gatewayToken),
      DATABASE_URL: text(stack.databaseUrl),
      NEON_WS_PROXY: text(stack.wsProxy),
      ADMIN_TOKEN: text(stack.adminToken),
      CACHE_PREFIX: text(prefix),
      ...Object.fromEntries(Object.entries(overrides).map(([name, value]) => [name, text(value)])),
    },
    dev: {
      server: { hostname: "127.0.0.1", port: 0 },
      inspector: false,
      persist: false,
      watch: false,
      liveReload: false,
      remote: false,
      testScheduled: true,
      logLevel: "warn",
    },
  });
  await worker.ready;
  const url = (await worker.url).toString();
  return { worker, url };
}

/** Product reads through the Worker until `stop()`: a MISS per product, then HITs. */
function traffic(base: string): { stop(): Promise<number> } {
  let running = true;
  let reads = 0;
  const loop = (async () => {
    for (let round = 0; running; round++) {
      // Products 1-8 first, three concurrent requests each (one MISS loads, the others wait
      // on its lease), then mostly HITs on a few hot ones.
      const ids =
        round === 0
          ? [1, 2, 3, 4, 5, 6, 7, 8].flatMap((id) => [id, id, id])
          : [1, 1, 1, 2, 2, 3, round % 8 || 8];
      await Promise.all(
        ids.map(async (id) => {
          const res = await fetch(`${base}products/${id}`);
          await res.arrayBuffer();
          expect(res.status).toBe(200);
          reads++;
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return reads;
    },
  };
}

describe.skipIf(!haveChromium)("dashboard in headless Chromium", () => {
  let browser: Browser | undefined;
  let started: { worker: StartedWorker; url: string } | undefined;
  let page: Page;
  const offOrigin: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    [started, browser] = await Promise.all([
      startWorker(),
      chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--no-first-run",
        ],
      }),
    ]);
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    const origin = new URL(started.url).origin;
    // Proof that the page needs nothing from the internet: any other origin is refused.
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      offOrigin.push(url);
      return route.abort();
    });
    page.on("pageerror", (error) => pageErrors.push(error.message));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await started?.worker.dispose();
  });

  it("asks for the token, asks again when it is wrong, then charts live traffic", async () => {
    if (!started) throw new Error("the Worker did not start");
    const base = started.url;
    await page.goto(`${base}admin/dashboard?interval=500`);
    await page.waitForSelector("body[data-state='need-token']");
    expect(await page.isVisible("#login")).toBe(true);

    await page.fill("#token", `${stack.adminToken}-wrong`);
    await page.click("#login-submit");
    await page.waitForSelector("#login-error:has-text('refused')");
    expect(await page.getAttribute("body", "data-state")).toBe("need-token");

    await page.fill("#token", stack.adminToken);
    await page.click("#login-submit");
    await page.waitForSelector("body[data-state='ok']");
    expect(await page.isVisible("#board")).toBe(true);

    // A queue run and a cron run, so the jobs panel has both heartbeats.
    const queued = await fetch(`${base}admin/invalidate`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ keys: ["product:999"], async: true }),
    });
    expect(queued.status).toBe(202);
    const cron = await fetch(`${base}__scheduled?cron=${encodeURIComponent("*/5 * * * *")}`);
    expect(cron.status).toBe(200);

    const load = traffic(base);
    try {
      await page.waitForFunction(
        () => {
          // Runs in the page; this project's TypeScript has no DOM types, hence PageDocument.
          const doc = (globalThis as unknown as { document: PageDocument }).document;
          const d = doc.body.dataset;
          const hot = Number(doc.querySelector("#hot")?.dataset.count);
          const purge = doc.querySelector("#jobs tr:nth-child(2) td:nth-child(2)");
          return (
            Number(d.samples) >= 8 &&
            Number(d.readsPerSecondMax) > 0 &&
            Number(d.hitRatio) > 50 &&
            hot > 0 &&
            Boolean(purge?.textContent?.endsWith("ago"))
          );
        },
        undefined,
        { timeout: 60_000, polling: 200 },
      );
    } finally {
      expect(await load.stop()).toBeGreaterThan(0);
    }

    // Two uPlot charts, each drawn on a canvas with a series legend.
    expect(await page.locator("#chart-rates canvas").count()).toBe(1);
    expect(await page.locator("#chart-ratio canvas").count()).toBe(1);
    expect(await page.locator("#chart-rates .u-legend .u-series").allTextContents()).toEqual(
      expect.arrayContaining([
        expect.stringContaining("HIT"),
        expect.stringContaining("MISS"),
        expect.stringContaining("STALE"),
        expect.stringContaining("BYPASS"),
      ]),
    );
    const tile = (key: string) =>
      page.locator(`.tile[data-key='${key}'] .v`).textContent() as Promise<string>;
    expect(Number((await tile("loads")).replaceAll(",", ""))).toBeGreaterThanOrEqual(8);
    expect(Number(await tile("Redis req / read (all time)"))).toBeGreaterThan(0);
    expect(await tile("vouched by a check")).toMatch(/^[\d,]+$/);
    expect(await page.locator("#hot td").first().textContent()).toMatch(/^product:\d+$/);
    expect(await tile("used memory")).toMatch(/B$/);
    expect(await page.locator("#jobs tr:nth-child(1) td:nth-child(2)").textContent()).toMatch(
      /ago$/,
    );
    // The dead-letter consumer's row, never run here (nothing died).
    expect(await page.locator("#jobs tr:nth-child(3) td").allTextContents()).toEqual([
      "queue (dead letters)",
      "never",
      "",
    ]);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(offOrigin).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 120_000);

  it("renders the API's Swagger UI at /docs from this Worker alone, under its CSP", async () => {
    if (!started || !browser) throw new Error("the Worker did not start");
    const origin = new URL(started.url).origin;
    const docs = await browser.newPage();
    const elsewhere: string[] = [];
    const errors: string[] = [];
    await docs.route("**/*", (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      elsewhere.push(url);
      return route.abort();
    });
    docs.on("pageerror", (error) => errors.push(error.message));
    // A CSP violation (an inline script, an eval, another origin) is a console error.
    docs.on("console", (message) => {
      if (message.type() === "error") errors.push(message.text());
    });
    try {
      await docs.goto(`${started.url}docs`);
      await docs.waitForSelector(".swagger-ui .info .title", { timeout: 30_000 });
      expect(await docs.textContent(".swagger-ui .info .title")).toContain("edgecache");
      // Every operation of the document is listed, the new admin outbox routes among them.
      await docs.waitForSelector(".opblock-summary-path");
      const paths = await docs.locator(".opblock-summary-path").allTextContents();
      expect(paths.join(" ")).toContain("/admin/outbox/{id}/retry");
      expect(elsewhere).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await docs.close();
    }
  });

  it("shows a visible message when the API stops answering", async () => {
    if (!started) throw new Error("the Worker did not start");
    await started.worker.dispose();
    started = undefined;
    await page.waitForSelector("body[data-state='error']", { timeout: 20_000 });
    expect(await page.textContent("#banner")).toMatch(/Cannot reach the admin API|answered 5\d\d/);
    expect(await page.isVisible("#banner")).toBe(true);
  }, 60_000);

  it("names the figures Redis could not give and shows the rest", async () => {
    // The gateway refuses this token, as Upstash would: every Redis-backed section fails.
    const refused = await startWorker({ UPSTASH_REDIS_REST_TOKEN: `refused-${prefix}` });
    const tab = await (browser as Browser).newPage({ viewport: { width: 1360, height: 900 } });
    try {
      await tab.goto(`${refused.url}admin/dashboard?interval=500`);
      await tab.fill("#token", stack.adminToken);
      await tab.click("#login-submit");
      await tab.waitForSelector("body[data-state='partial']");
      expect(await tab.textContent("#banner")).toMatch(/Some figures are missing: cache: .+/);
      expect(await tab.isVisible("#banner")).toBe(true);
      // Postgres still answers: the outbox figures are there, the cache ones are not.
      expect(await tab.textContent(".tile[data-key='outbox pending'] .v")).toMatch(/^\d+$/);
      expect(await tab.textContent(".tile[data-key='loads'] .v")).toBe("—");
      expect(await tab.textContent("#hot")).toContain("unavailable");
    } finally {
      await tab.close();
      await refused.worker.dispose();
    }
  }, 60_000);

  it("charts a poll that lost its counters as no point, and keeps the poll period within bounds", async () => {
    const own = await startWorker();
    const tab = await (browser as Browser).newPage({ viewport: { width: 1360, height: 900 } });
    // The real answers, with scripted counters: 30,000 reads, then a poll whose counters Redis
    // could not give (cache: null), then one more read per poll.
    let polls = 0;
    await tab.route("**/admin/stats", async (route) => {
      const response = await route.fetch();
      const json = (await response.json()) as Record<string, unknown>;
      const n = polls++;
      const reads = n === 0 ? 30_000 : 30_000 + n;
      json.cache =
        n === 1
          ? null
          : { hits: reads, misses: 0, stale_hits: 0, bypass: 0, reads, read_requests: reads };
      if (n === 1) json.errors = { cache: "timeout (scripted)" };
      await route.fulfill({ response, json });
    });
    try {
      await tab.goto(`${own.url}admin/dashboard?interval=500`);
      await tab.fill("#token", stack.adminToken);
      await tab.click("#login-submit");
      await tab.waitForFunction(
        () => {
          const doc = (globalThis as unknown as { document: PageDocument }).document;
          return Number(doc.body.dataset.samples) >= 3;
        },
        undefined,
        { timeout: 20_000, polling: 100 },
      );
      // About 2 reads a second at most (one per 500 ms poll); the all-time 30,000 never.
      const max = Number(await tab.getAttribute("body", "data-reads-per-second-max"));
      expect(max).toBeGreaterThan(0);
      expect(max).toBeLessThan(10);

      await tab.goto(`${own.url}admin/dashboard?interval=1e10`);
      await tab.waitForSelector("body[data-state='ok'], body[data-state='partial']");
      expect(await tab.textContent("#status")).toMatch(/every 600 s$/);
      await tab.goto(`${own.url}admin/dashboard?interval=Infinity`);
      await tab.waitForSelector("body[data-state='ok'], body[data-state='partial']");
      expect(await tab.textContent("#status")).toMatch(/every 3 s$/);
    } finally {
      await tab.close();
      await own.worker.dispose();
    }
  }, 60_000);
});

describe.runIf(!haveChromium && inCi)("dashboard in headless Chromium (CI)", () => {
  it("needs Chromium", () => {
    throw new Error(missing);
  });
});
