import { describe, expect, it } from "vitest";
import { CRON_SERVICES } from "../../src/jobs/warm";
import type { Services } from "../../src/runtime/services";
import { withServices } from "./helpers";
import { gatewayControl, stack } from "./stack";

/**
 * The Upstash client each invocation gets (src/redis/client.ts): a request's sends every call
 * as it comes, since its cache reads run one script at a time and auto-pipelining would only
 * add a Pipeline per call; a cron tick's batches what it issues together (the warmer's
 * write-throughs), since that saves subrequests.
 */
const token = stack.spareGatewayTokens.client;
const counted = { UPSTASH_REDIS_REST_TOKEN: token };
const prefix = `client-${Date.now().toString(36)}`;

async function requestsFor(work: (s: Services) => Promise<unknown>, cron: boolean) {
  await gatewayControl("reset", { token });
  const answers = await withServices(prefix, counted, work, cron ? CRON_SERVICES : undefined);
  const stats = await gatewayControl("stats", { token });
  return { answers, requests: Number(stats.requests), commands: Number(stats.commands) };
}

/** Three reads issued together, with nothing awaited in between. */
const threePeeks = (s: Services) =>
  Promise.all([1, 2, 3].map((n) => s.redis.get(`${prefix}:absent:${n}`)));

describe("the Upstash client per invocation", () => {
  it("sends a request's calls one by one, each as its own request", async () => {
    const { answers, requests, commands } = await requestsFor(threePeeks, false);
    expect(answers).toEqual([null, null, null]);
    expect(commands).toBe(3);
    expect(requests).toBe(3);
  });

  it("batches what a cron tick issues together into one request", async () => {
    const { answers, requests, commands } = await requestsFor(threePeeks, true);
    expect(answers).toEqual([null, null, null]);
    expect(commands).toBe(3);
    expect(requests).toBe(1);
  });
});
