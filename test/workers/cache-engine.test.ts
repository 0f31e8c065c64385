import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../src/cache";
import { createRedis } from "../../src/redis/client";
import { gatewayControl, stack } from "./stack";

/**
 * The engine inside workerd, with the Worker's own Upstash client and ctx.waitUntil, against
 * the real gateway. The Node-side suite covers the races; this proves the runtime fit.
 */
const token = stack.spareGatewayTokens.engine;
const redis = createRedis({ url: stack.gatewayUrl, token });

describe("EdgeCache in workerd", () => {
  it("misses, fills in waitUntil, then hits in one request", async () => {
    const cache = new EdgeCache({ redis, prefix: `w${Date.now()}` });
    const opts = { ttl: 30_000, tags: ["products"], earlyRefresh: false as const };
    // Load the scripts (a miss's and a hit's): alone, or first in the run, the hit below was a
    // NOSCRIPT and an EVAL, two requests.
    const warm = createExecutionContext();
    await cache.getOrLoad("warm", async () => 0, { ...opts, waitUntil: (p) => warm.waitUntil(p) });
    await waitOnExecutionContext(warm);
    await cache.getOrLoad("warm", async () => 0, opts);
    await gatewayControl("reset", { token });

    const ctx = createExecutionContext();
    const miss = await cache.getOrLoad("product:1", async () => ({ id: 1, name: "Lamp" }), {
      ...opts,
      waitUntil: (p) => ctx.waitUntil(p),
    });
    expect(miss.status).toBe("MISS");
    await waitOnExecutionContext(ctx);
    expect((await gatewayControl("stats", { token })).requests).toBe(2);

    const hit = await cache.getOrLoad("product:1", async () => ({ id: 1, name: "never" }), opts);
    expect(hit).toMatchObject({ status: "HIT", value: { id: 1, name: "Lamp" } });
    expect((await gatewayControl("stats", { token })).requests).toBe(3);

    await cache.invalidateTags("products");
    const after = await cache.getOrLoad("product:1", async () => ({ id: 1, name: "Desk" }), opts);
    expect(after).toMatchObject({ status: "MISS", value: { name: "Desk" } });
  });

  it("coalesces concurrent loads inside the isolate and across instances via the lease", async () => {
    const prefix = `w2${Date.now()}`;
    const a = new EdgeCache({ redis, prefix });
    const b = new EdgeCache({ redis, prefix });
    let loads = 0;
    const loader = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 100));
      return "v";
    };
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).getOrLoad("k", loader)),
    );
    expect(loads).toBe(1);
    expect(results.every((r) => r.value === "v")).toBe(true);
  });

  it("a reader that joins during the load takes its value on a lease check riding on another read, before the fill answers", async () => {
    const prefix = `w3${Date.now()}`;
    // One isolate's state, of this test only; no telemetry flush among the requests counted.
    const shared = { flights: new FlightRegistry(), known: new KnownEntries() };
    const engine = () =>
      new EdgeCache({ redis, prefix, ...shared, telemetry: { flushIntervalMs: 3_600_000 } });
    const opts = { ttl: 30_000, earlyRefresh: false as const };
    await engine().getOrLoad("q", async () => "carrier", opts); // q: known fresh, a hit read
    await engine().getOrLoad("q", async () => "carrier", opts);
    let open = () => {};
    const loadGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let loading = () => {};
    const loadStarted = new Promise<void>((resolve) => {
      loading = resolve;
    });
    const load = async () => {
      loading();
      await loadGate;
      return "v1";
    };
    await gatewayControl("reset", { token });
    // Every request of this token takes 300 ms: the fill's answer comes well after the load.
    await gatewayControl("faults", { token, body: { latencyMs: 300 } });
    try {
      const ctx = createExecutionContext();
      let fillAnswered = 0;
      const waitUntil = (p: Promise<unknown>) =>
        ctx.waitUntil(p.finally(() => (fillAnswered = Date.now())));
      const leader = engine().getOrLoad("p", load, { ...opts, waitUntil });
      await loadStarted; // the leader holds the lease and loads
      let joinerAnswered = 0;
      const joiner = engine()
        .getOrLoad("p", async () => "never", { ...opts, waitUntil })
        .finally(() => (joinerAnswered = Date.now()));
      await new Promise((r) => setTimeout(r, 20));
      // q's hit read goes out after the joiner began and carries its lease check.
      expect((await engine().getOrLoad("q", async () => "never", opts)).status).toBe("HIT");
      open();
      expect((await leader).value).toBe("v1");
      expect((await joiner).value).toBe("v1");
      await waitOnExecutionContext(ctx);
      expect(joinerAnswered).toBeGreaterThan(0);
      expect(joinerAnswered).toBeLessThan(fillAnswered); // not vouched by the fill
      // The leader's acquire, q's read, the fill: the joiner sent nothing of its own.
      expect((await gatewayControl("stats", { token })).requests).toBe(3);
      const stats = await engine().stats();
      expect(stats.check_vouched).toBe(1);
    } finally {
      await gatewayControl("faults", { method: "DELETE", token });
    }
  });
});
