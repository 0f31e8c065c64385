import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { EdgeCache } from "../../src/cache";
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
    await cache.getOrLoad("warm", async () => 0, opts); // load the scripts
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
});
