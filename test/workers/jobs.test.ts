import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  env,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../functions/index";
import { retryDelaySeconds } from "../../src/jobs/purge";
import { testRedis } from "./stack";

const prefix = env.CACHE_PREFIX ?? "ec";

describe("scheduled handler", () => {
  it("runs on a cron tick and leaves its heartbeat in Redis", async () => {
    const redis = testRedis();
    await redis.del(`${prefix}:job:warm`);
    const scheduledTime = Date.UTC(2026, 10, 22, 12, 0, 0);
    const controller = createScheduledController({ cron: "*/5 * * * *", scheduledTime });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    const beat = await redis.get<{ cron: string; scheduledTime: number; at: number }>(
      `${prefix}:job:warm`,
    );
    expect(beat).toMatchObject({ cron: "*/5 * * * *", scheduledTime });
    expect(beat?.at).toBeGreaterThan(scheduledTime);
  });
});

describe("queue handler", () => {
  it("acks valid invalidation events and retries malformed ones toward the dead-letter queue", async () => {
    const redis = testRedis();
    await redis.del(`${prefix}:job:purge`);
    const now = Date.now();
    const batch = createMessageBatch("edgecache-purge", [
      {
        id: "good-1",
        timestamp: new Date(now),
        attempts: 1,
        body: { keys: ["product:1"], tags: ["category:3"], origin: "test", at: now },
      },
      { id: "bad-1", timestamp: new Date(now), attempts: 1, body: { keys: "not-an-array" } },
      { id: "bad-2", timestamp: new Date(now), attempts: 3, body: "garbage" },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["good-1"]);
    expect(result.retryMessages.map((m) => m.msgId).sort()).toEqual(["bad-1", "bad-2"]);
    const beat = await redis.get<{ queue: string; accepted: number; rejected: number }>(
      `${prefix}:job:purge`,
    );
    expect(beat).toMatchObject({ queue: "edgecache-purge", accepted: 1, rejected: 2 });
  });
});

describe("retryDelaySeconds", () => {
  it("backs off exponentially and caps at a minute", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(retryDelaySeconds)).toEqual([2, 4, 8, 16, 32, 60, 60, 60]);
  });
});
