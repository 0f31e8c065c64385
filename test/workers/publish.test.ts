import { beforeEach, describe, expect, it } from "vitest";
import { consumeBatch, testEnv } from "./helpers";
import { gatewayControl, stack } from "./stack";

/**
 * PUBLISH_EVENTS=1: the queue consumer tells subscribers outside the edge what it applied, in
 * one extra request per batch. Counted per command by the gateway, on a token of this file's own.
 */
const token = stack.spareGatewayTokens.publish;

async function consume(publish: string | undefined) {
  const now = Date.now();
  return consumeBatch(
    [
      {
        id: "a",
        timestamp: new Date(now),
        attempts: 1,
        body: { keys: ["product:1"], origin: "t", at: now },
      },
      {
        id: "b",
        timestamp: new Date(now),
        attempts: 1,
        body: { tags: ["category:2"], origin: "t", at: now },
      },
    ],
    testEnv("t_publish", { UPSTASH_REDIS_REST_TOKEN: token, PUBLISH_EVENTS: publish }),
  );
}

describe("PUBLISH_EVENTS", () => {
  beforeEach(async () => {
    await gatewayControl("reset", { token });
  });

  it("publishes one message per applied batch when on", async () => {
    const result = await consume("1");
    expect(result.explicitAcks.sort()).toEqual(["a", "b"]);
    const stats = (await gatewayControl("stats", { token })) as {
      byCommand: Record<string, number>;
    };
    expect(stats.byCommand.PUBLISH).toBe(1);
  });

  it("publishes nothing by default", async () => {
    const result = await consume(undefined);
    expect(result.explicitAcks.sort()).toEqual(["a", "b"]);
    const stats = (await gatewayControl("stats", { token })) as {
      byCommand: Record<string, number>;
    };
    expect(stats.byCommand.PUBLISH).toBeUndefined();
    expect(stats.byCommand.EVALSHA ?? stats.byCommand.EVAL).toBeGreaterThan(0);
  });
});
