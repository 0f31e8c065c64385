import { describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry } from "../../src/cache";
import { createRedis } from "../../src/redis/client";
import { apiFor, api as callApi, type ErrorBody, fetchWorker } from "./api";
import { gatewayControl, stack, testRedis } from "./stack";

/**
 * The dashboard's files through the real Worker (the browser test in test/node/dashboard.test.ts
 * drives the page itself), and the counters its charts are computed from.
 */
const prefix = `td${Date.now().toString(36)}`;
const admin = apiFor(prefix, { admin: true });

describe("GET /admin/dashboard", () => {
  it("serves the page without a token, locked to this origin", async () => {
    const res = await fetchWorker("/admin/dashboard");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(res.headers.get("etag")).toBeTruthy();
    const html = await res.text();
    expect(html).toContain('<script src="/admin/dashboard/uplot.js">');
    expect(html).toContain('<script src="/admin/dashboard/app.js">');
    // Nothing from another origin.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it.each([
    ["app.js", "text/javascript; charset=utf-8", "/admin/stats"],
    ["uplot.js", "text/javascript; charset=utf-8", "uPlot"],
    ["uplot.css", "text/css; charset=utf-8", ".uplot"],
  ])("serves %s from the bundle", async (name, type, marker) => {
    const res = await fetchWorker(`/admin/dashboard/${name}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(type);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const body = await res.text();
    expect(body).toContain(marker);
    // The file itself, not a module object turned into a string.
    expect(body.length).toBeGreaterThan(1000);
  });

  it("answers 304 to a matching If-None-Match", async () => {
    const first = await fetchWorker("/admin/dashboard/uplot.js");
    const etag = first.headers.get("etag") ?? "";
    const again = await fetchWorker("/admin/dashboard/uplot.js", {
      headers: new Headers({ "if-none-match": etag }),
    });
    expect(again.status).toBe(304);
  });

  it("answers an unknown file with 404 in the error shape", async () => {
    for (const name of ["nope.js", "constructor", "__proto__"]) {
      const res = await fetchWorker(`/admin/dashboard/${name}`);
      expect(res.status).toBe(404);
      const body = (await res.json()) as ErrorBody;
      expect(body.error.code).toBe("not_found");
    }
  });

  it("answers another method with 405 and Allow, not 401: no token would make it work", async () => {
    for (const path of ["/admin/dashboard", "/admin/dashboard/uplot.js"]) {
      for (const method of ["POST", "DELETE"]) {
        const res = await fetchWorker(path, { method });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.get("allow")).toContain("GET");
        expect(((await res.json()) as ErrorBody).error.code).toBe("method_not_allowed");
      }
    }
  });

  it("leaves the data behind the token", async () => {
    const res = await callApi<ErrorBody>("GET", "/admin/stats", { prefix });
    expect(res.status).toBe(401);
  });
});

interface Stats {
  cache: Record<string, number>;
  outbox: { pending: number; stuck: number; oldestAgeMs: number | null };
}

describe("the figures the dashboard charts", () => {
  it("counts reads and the Redis requests they cost: MISS 2, HIT 1", async () => {
    const own = apiFor(`${prefix}r`, { admin: true });
    const miss = await callApi("GET", "/products/7", { prefix: `${prefix}r` });
    expect(miss.headers.get("x-cache")).toBe("MISS");
    for (let i = 0; i < 2; i++) {
      const hit = await callApi("GET", "/products/7", { prefix: `${prefix}r` });
      expect(hit.headers.get("x-cache")).toBe("HIT");
    }
    const stats = (await own<Stats>("GET", "/admin/stats")).body;
    expect(stats.cache).toMatchObject({ reads: 3, misses: 1, hits: 2, loads: 1 });
    // read + fill for the MISS, one read per HIT.
    expect(stats.cache.read_requests).toBe(4);
  });

  it("counts a caller that joined a running load as coalesced (a load avoided)", async () => {
    const engine = new EdgeCache({ redis: testRedis(), prefix: `${prefix}c` });
    let loads = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const loader = async () => {
      loads++;
      await gate;
      return "v";
    };
    const both = Promise.all([engine.getOrLoad("k", loader), engine.getOrLoad("k", loader)]);
    release();
    const results = await both;
    expect(results.map((r) => r.value)).toEqual(["v", "v"]);
    expect(loads).toBe(1);
    const stats = await engine.stats();
    expect(stats).toMatchObject({ reads: 2, coalesced: 1, loads: 1, misses: 1 });
    expect(stats.read_requests).toBe(2); // one read, one fill; the follower sent nothing
  });

  it("counts exactly the Redis requests the gateway saw for reads: MISS, HITs, a lease wait", async () => {
    // A token of its own, so the gateway's counter holds this test's requests only.
    const token = stack.spareGatewayTokens.dashboard;
    const redis = createRedis({ url: stack.gatewayUrl, token });
    const engine = (p: string) => new EdgeCache({ redis, prefix: p });
    const p = `${prefix}g`;
    await gatewayControl("reset", { token });
    const a = engine(p);
    await a.getOrLoad("k", async () => 1); // MISS: read + fill
    await a.getOrLoad("k", async () => 1); // HIT
    await a.getOrLoad("k", async () => 1); // HIT
    // Two engines on a cold key, each in its own isolate (its own FlightRegistry: requests of
    // one isolate would share the load instead): one loads, the other waits on its lease.
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const holder = engine(p).getOrLoad("w", async () => {
      await gate;
      return 2;
    });
    await new Promise((resolve) => setTimeout(resolve, 30)); // the holder has the lease
    const waiter = new EdgeCache({ redis, prefix: p, flights: new FlightRegistry() }).getOrLoad(
      "w",
      async () => 3,
    );
    await new Promise((resolve) => setTimeout(resolve, 30)); // the waiter is polling
    release();
    expect([(await holder).value, (await waiter).value]).toEqual([2, 2]);
    const seen = Number((await gatewayControl("stats", { token })).requests);
    const stats = await a.stats();
    expect(stats.lease_waits).toBe(1);
    expect(stats.reads).toBe(5);
    expect(stats.read_requests).toBe(seen);
    expect(seen).toBeGreaterThanOrEqual(8); // 2 + 1 + 1 + (2 holder) + (≥2 waiter)
  });

  it("costs a bounded number of Redis requests per dashboard refresh", async () => {
    const token = stack.spareGatewayTokens.dashboard;
    await gatewayControl("reset", { token });
    const res = await callApi<Stats>("GET", "/admin/stats", {
      prefix: `${prefix}g`,
      admin: true,
      env: { UPSTASH_REDIS_REST_TOKEN: token },
    });
    expect(res.status).toBe(200);
    // stats (flush + read), hot keys, heartbeats, INFO.
    const seen = await gatewayControl("stats", { token });
    // Auto-pipelining may merge the concurrent ones into fewer HTTP requests.
    expect(Number(seen.requests)).toBeLessThanOrEqual(5);
    expect(Number(seen.commands)).toBeLessThanOrEqual(5);
  });

  it("reports parked outbox rows next to the lag", async () => {
    const stats = (await admin<Stats>("GET", "/admin/stats")).body;
    expect(stats.outbox.stuck).toEqual(expect.any(Number));
  });
});
