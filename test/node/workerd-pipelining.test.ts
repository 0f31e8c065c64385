import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Unstable_DevWorker, unstable_dev } from "wrangler";
import { gatewayControl } from "../../tools/upstash-gateway/control";

/**
 * What the benchmark assumes about a Worker's Redis client, checked in workerd.
 *
 * `@upstash/redis` auto-pipelines by default: the commands issued within two microtask turns
 * of each other share one `/pipeline` request. In one Node process, 50 bench clients sharing
 * one client fold each other's commands that way (a stampede's 200 GETs become one request).
 * A Worker cannot: each request runs in its own turn of the isolate's event loop, so even a
 * client kept at module scope sends every request's command on its own. The benchmark therefore
 * gives every contender a client with auto-pipelining off (bench/lib/upstash.ts); if this test
 * ever fails, workerd started folding and the benchmark's assumption must be revisited.
 */
const stack = inject("stack");
const token = stack.spareGatewayTokens.pipelining;
const CONCURRENT = 40;
let worker: Unstable_DevWorker;

const stats = () =>
  gatewayControl<{ requests: number; commands: number }>(stack.gatewayUrl, token, "stats");

beforeAll(async () => {
  worker = await unstable_dev("test/node/fixtures/shared-client-worker.ts", {
    config: undefined,
    compatibilityDate: "2025-09-01",
    local: true,
    persist: false,
    inspect: false,
    logLevel: "error",
    experimental: { disableExperimentalWarning: true },
    vars: { UPSTASH_REDIS_REST_URL: stack.gatewayUrl, UPSTASH_REDIS_REST_TOKEN: token },
  });
  // One request first, so the module-scope client exists before the concurrent ones.
  expect((await worker.fetch("/get?k=pipelining:warm")).status).toBe(200);
});

afterAll(async () => {
  await gatewayControl(stack.gatewayUrl, token, "reset", {});
  await worker?.stop();
});

describe("auto-pipelining across requests", () => {
  it("workerd: concurrent requests on one module-scope client send one HTTP request each", async () => {
    await gatewayControl(stack.gatewayUrl, token, "reset", {});
    // Slow Redis, so every request's GET is issued while the others are still waiting.
    await gatewayControl(stack.gatewayUrl, token, "faults", { latencyMs: 300 });
    const responses = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) => worker.fetch(`/get?k=pipelining:${i}`)),
    );
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const { peak } = (await (await worker.fetch("/peak")).json()) as { peak: number };
    const counted = await stats();
    await gatewayControl(stack.gatewayUrl, token, "reset", {});
    // The requests did overlap in the isolate (else nothing could have folded)…
    expect(peak).toBeGreaterThanOrEqual(CONCURRENT / 2);
    // …and still every GET went out in a request of its own.
    expect(counted.commands).toBe(CONCURRENT);
    expect(counted.requests).toBe(CONCURRENT);
  });

  it("Node: the same client folds commands issued together into one request", async () => {
    await gatewayControl(stack.gatewayUrl, token, "reset", {});
    const redis = new Redis({ url: stack.gatewayUrl, token, enableTelemetry: false });
    await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => redis.get(`pipelining:${i}`)));
    const counted = await stats();
    expect(counted.commands).toBe(CONCURRENT);
    expect(counted.requests).toBe(1);
  });
});
