import { describe, expect, it } from "vitest";
import type { EdgeCache } from "../../src/cache";
import type { Services } from "../../src/runtime/services";
import { withServices } from "./helpers";
import { gatewayControl, stack } from "./stack";

/**
 * The two engines an invocation's services offer (src/runtime/services.ts): `cache`, whose
 * client sends every call as it comes (a request's reads run one script at a time, so
 * auto-pipelining would only add a Pipeline per call), and `batchCache`, whose client batches
 * what is issued together (the warmer's write-throughs), since that saves subrequests.
 */
const token = stack.spareGatewayTokens.client;
const counted = { UPSTASH_REDIS_REST_TOKEN: token };
const prefix = `client-${Date.now().toString(36)}`;

/** Three peeks issued together, with nothing awaited in between. */
const threePeeks = (engine: EdgeCache) =>
  Promise.all([1, 2, 3].map((n) => engine.get(`absent:${n}`)));

async function counting(pick: (s: Services) => EdgeCache) {
  // Once first, so the count holds no NOSCRIPT → EVAL retry of a script Redis had not seen.
  await withServices(prefix, counted, (s) => threePeeks(pick(s)));
  await gatewayControl("reset", { token });
  const answers = await withServices(prefix, counted, (s) => threePeeks(pick(s)));
  const stats = await gatewayControl("stats", { token });
  return { answers, requests: Number(stats.requests), commands: Number(stats.commands) };
}

describe("the Upstash clients of an invocation", () => {
  it("sends the request engine's calls one by one, each as its own request", async () => {
    const { answers, requests, commands } = await counting((s) => s.cache);
    expect(answers).toEqual([null, null, null]);
    expect(commands).toBeGreaterThanOrEqual(3); // and the stats flush, when one is due
    expect(requests).toBe(commands);
  });

  it("asks for plain replies, not base64, and reads non-ASCII text back as written", async () => {
    const text = 'Grüße, 日本語, emoji 🙂, "quotes", back\\slash, line\u2028sep';
    const value = { id: 7, name: text, tags: ["naïve", "café"] };
    await gatewayControl("reset", { token });
    const read = await withServices(prefix, counted, async (s) => {
      await s.cache.writeThrough("unicode:7", value, 1);
      await s.redis.set(`${prefix}:raw-unicode`, text);
      return {
        engine: await s.cache.get("unicode:7", { versionKey: "unicode:7" }),
        batched: await s.batchCache.get("unicode:7", { versionKey: "unicode:7" }),
        raw: await s.redis.get<string>(`${prefix}:raw-unicode`),
      };
    });
    expect(read.engine?.value).toEqual(value);
    expect(read.engine?.status).toBe("HIT");
    expect(read.batched?.value).toEqual(value);
    expect(read.raw).toBe(text);
    const stats = await gatewayControl("stats", { token });
    expect(Number(stats.requests)).toBeGreaterThanOrEqual(4);
    // The client's default would ask for base64 on every request (and decode every reply).
    expect(Number(stats.base64Requests)).toBe(0);
  });

  it("batches what is issued together through batchCache into one request", async () => {
    const { answers, requests, commands } = await counting((s) => s.batchCache);
    expect(answers).toEqual([null, null, null]);
    expect(commands).toBeGreaterThanOrEqual(3);
    // The peeks are read-only and ride together; a stats flush (a write) would ride apart.
    expect(requests).toBeLessThanOrEqual(2);
    expect(requests).toBeLessThan(commands);
  });
});
