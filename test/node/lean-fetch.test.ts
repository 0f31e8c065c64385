import { Redis } from "@upstash/redis";
import { afterEach, describe, expect, inject, it } from "vitest";
import { leanFetch } from "../../bench/lib/lean-fetch";

/**
 * `npm run bench -- --transport=lean` swaps Node's fetch for bench/lib/lean-fetch.ts: it must
 * carry what @upstash/redis sends and reads, against the real gateway, or that run measures a
 * broken client.
 */
const stack = inject("stack");
const token = stack.spareGatewayTokens.lean;
const original = globalThis.fetch;

afterEach(() => {
  globalThis.fetch = original;
});

describe("the bench's lean HTTP client", () => {
  it("carries @upstash/redis's commands, replies and errors", async () => {
    (globalThis as { fetch: unknown }).fetch = leanFetch;
    const redis = new Redis({ url: stack.gatewayUrl, token, enableTelemetry: false });
    await redis.set("lean:text", "Grüße 🙂");
    expect(await redis.get("lean:text")).toBe("Grüße 🙂");
    expect(await redis.eval("return KEYS[1] .. ARGV[1]", ["lean:k"], ["!"])).toBe("lean:k!");
    // A Redis error comes back as a non-2xx answer whose body the client reports.
    await expect(redis.incr("lean:text")).rejects.toThrow(/not an integer/);
    const refused = new Redis({ url: stack.gatewayUrl, token: "no-such-token", retry: false });
    await expect(refused.get("lean:text")).rejects.toThrow();
  });

  it("answers status, headers and body like fetch, and honours an abort signal", async () => {
    const res = await leanFetch(stack.gatewayUrl, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(["ECHO", "hi"]),
    });
    expect(res.ok).toBe(true);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ result: "hi" });
    const unauthorized = await leanFetch(stack.gatewayUrl, { method: "POST", body: "[]" });
    expect(unauthorized.ok).toBe(false);
    expect(unauthorized.status).toBe(401);
    await expect(
      leanFetch(stack.gatewayUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify(["ECHO", "late"]),
        signal: AbortSignal.abort(),
      }),
    ).rejects.toThrow(/abort/i);
  });
});
