import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Unstable_DevWorker } from "wrangler";
import { EdgeCache } from "../../src/cache";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";
import { startDevWorker } from "./dev-worker";

/**
 * End to end, nothing stood in for: the real Worker (functions/index.ts, bundled by wrangler
 * and run in workerd by `unstable_dev`, queue producer and consumer from wrangler.toml served
 * by miniflare's local queue broker) with PUBLISH_EVENTS=1, a real @upstash/redis subscriber
 * in Node on the gateway, real Redis behind it. Invalidations go in through the admin API
 * (`async: true` → PURGE_QUEUE → the queue() handler → processPurgeBatch → PUBLISH), and the
 * subscriber must hear every one of them, in events that match what Redis now holds.
 */
const stack = inject("stack");
const TOKEN = `events-e2e-${randomBytes(8).toString("hex")}`;
const ADMIN = `admin-${randomBytes(16).toString("hex")}`;
const PREFIX = `ev${randomBytes(4).toString("hex")}`;

interface PublishedEvent {
  keys: string[];
  tags: string[];
  versions: Record<string, number>;
  messages: number;
  origin: string;
  at: number;
}

let gateway: Gateway;
let worker: Unstable_DevWorker;
let redis: Redis;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function invalidateLater(body: { keys?: string[]; tags?: string[] }): Promise<void> {
  const res = await worker.fetch("/admin/invalidate", {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ ...body, async: true }),
  });
  expect(res.status, await res.clone().text()).toBe(202);
}

beforeAll(async () => {
  // A gateway of this file's own (same Redis DB as the stack) so its PUBLISH count is ours.
  gateway = await startGateway({
    port: 0,
    redisUrl: stack.redisUrl,
    tokens: { [TOKEN]: { db: stack.redisDb } },
  });
  redis = new Redis({ url: gateway.url, token: TOKEN, enableTelemetry: false });
  worker = await startDevWorker({
    UPSTASH_REDIS_REST_URL: gateway.url,
    UPSTASH_REDIS_REST_TOKEN: TOKEN,
    ADMIN_TOKEN: ADMIN,
    CACHE_PREFIX: PREFIX,
    PUBLISH_EVENTS: "1",
  });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.close();
});

describe("PUBLISH_EVENTS heard by a real @upstash/redis subscriber", () => {
  it("receives every invalidation the queue consumer applied, matching Redis", async () => {
    const cache = new EdgeCache({ redis, prefix: PREFIX });
    const keys = Array.from({ length: 12 }, (_, i) => `product:${i + 1}`);
    const tags = ["category:1", "category:2", "category:3"];
    // Cached entries the invalidations must remove: one per key, plus tagged ones.
    for (const key of keys) await cache.getOrLoad(key, async () => ({ key }));
    for (const tag of tags)
      await cache.getOrLoad(`list:${tag}`, async () => [tag], { tags: [tag] });
    await cache.settle();
    expect((await cache.inspect("product:1")).state).toBe("fresh");

    const events: PublishedEvent[] = [];
    const errors: unknown[] = [];
    const sub = redis.subscribe<PublishedEvent>(`${PREFIX}:events`);
    sub.on("message", ({ message }) => events.push(message));
    sub.on("error", (error) => errors.push(error));
    const watcher = redis.psubscribe<PublishedEvent>(`${PREFIX}:*`);
    const watched: { channel: string; message: PublishedEvent }[] = [];
    watcher.on("pmessage", ({ channel, message }) => watched.push({ channel, message }));
    try {
      await until("both subscriptions", async () => {
        const stats = await fetch(`${gateway.url}/__gateway/stats`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        return ((await stats.json()) as { streams: { active: number } }).streams.active === 2;
      });

      // Two waves, so the consumer sees at least two batches (max_batch_timeout = 2 s).
      let sent = 0;
      for (const [i, key] of keys.slice(0, 6).entries()) {
        await invalidateLater(
          i < tags.length ? { keys: [key], tags: [tags[i] ?? ""] } : { keys: [key] },
        );
        sent++;
      }
      const firstWave = () => events.reduce((n, e) => n + e.messages, 0) === sent;
      await until("the first wave's events", firstWave);
      for (const key of keys.slice(6)) {
        await invalidateLater({ keys: [key] });
        sent++;
      }
      await until(
        "every message reported",
        () => events.reduce((n, e) => n + e.messages, 0) === sent,
      );

      expect(errors).toEqual([]);
      expect(events.length).toBeGreaterThanOrEqual(2);
      expect(events.flatMap((e) => e.keys).sort()).toEqual([...keys].sort());
      expect(events.flatMap((e) => e.tags).sort()).toEqual([...tags].sort());
      for (const event of events) {
        expect(event.origin).toBe("purge");
        expect(event.versions).toEqual({});
        expect(event.at).toBeGreaterThan(0);
      }
      // One PUBLISH per applied batch, and each one heard.
      const stats = await fetch(`${gateway.url}/__gateway/stats`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const counted = (await stats.json()) as { byCommand: Record<string, number> };
      expect(counted.byCommand.PUBLISH).toBe(events.length);
      await until("the pattern subscriber", () => watched.length === events.length);
      expect(watched.map((w) => w.channel)).toEqual(events.map(() => `${PREFIX}:events`));
      expect(watched.map((w) => w.message)).toEqual(events);

      // What the events say happened did happen.
      for (const key of keys) expect((await cache.inspect(key)).state, key).toBe("absent");
      for (const tag of tags) {
        const again = await cache.getOrLoad(`list:${tag}`, async () => [tag, "reloaded"], {
          tags: [tag],
        });
        expect(again.status, tag).toBe("MISS");
      }
    } finally {
      await sub.unsubscribe();
      await watcher.unsubscribe();
      await cache.settle();
    }
  });
});
