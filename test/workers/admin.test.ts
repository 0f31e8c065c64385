import { describe, expect, it } from "vitest";
import { EdgeCache } from "../../src/cache";
import type { InvalidationEvent } from "../../src/domain/events";
import { apiFor, api as callApi, type ErrorBody } from "./api";
import { FakeQueue } from "./helpers";
import { stack, testRedis } from "./stack";

/** /admin through the real Worker, gateway and Postgres; only the queue producer is a stand-in. */
const prefix = `ta${Date.now().toString(36)}`;
const redis = testRedis();
const cache = new EdgeCache({ redis, prefix });

const admin = apiFor(prefix, { admin: true });

let seq = 0;

describe("admin auth", () => {
  const routes: [string, string, unknown?][] = [
    ["POST", "/admin/invalidate", { keys: ["x:1"] }],
    ["GET", "/admin/stats"],
    ["GET", "/admin/entries/x:1"],
    ["POST", "/admin/warm"],
  ];

  it.each(routes)("%s %s answers 401 without a token", async (method, path, body) => {
    const res = await callApi<ErrorBody>(method, path, { prefix, body });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer realm=/);
  });

  it.each(routes)("%s %s answers 401 with a wrong token", async (method, path, body) => {
    const res = await callApi<ErrorBody>(method, path, {
      prefix,
      body,
      headers: { authorization: `Bearer ${stack.adminToken}x` },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
  });

  it("does not run the handler for a rejected call", async () => {
    const key = `auth:${++seq}`;
    await cache.set(key, "kept");
    await callApi("POST", "/admin/invalidate", { prefix, body: { keys: [key] } });
    expect((await cache.get(key))?.value).toBe("kept");
  });
});

describe("POST /admin/invalidate", () => {
  it("applies keys and tags now", async () => {
    const a = `inv:a${++seq}`;
    const b = `inv:b${seq}`;
    const tagged = `inv:t${seq}`;
    const tag = `invtag-${seq}`;
    await cache.set(a, 1);
    await cache.set(b, 2);
    await cache.set(tagged, 3, { tags: [tag] });
    const res = await admin<{ applied: Record<string, number>; done: boolean }>(
      "POST",
      "/admin/invalidate",
      { body: { keys: [a, b, a], tags: [tag] } },
    );
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      applied: { keys: 2, tags: 1, removed: 2, tagsBumped: 1 },
      patterns: [],
      done: true,
    });
    expect(await cache.get(a)).toBeNull();
    expect(await cache.get(b)).toBeNull();
    expect(await cache.get(tagged)).toBeNull();
  });

  it("purges a pattern in bounded steps, resumable with the returned cursor", async () => {
    const family = `ipat${++seq}`;
    await Promise.all(Array.from({ length: 40 }, (_, i) => cache.set(`${family}:${i}`, i)));
    await cache.set(`${family}keep:1`, "kept");
    let body: Record<string, unknown> = { patterns: [`${family}:*`] };
    let deleted = 0;
    for (let call = 0; ; call++) {
      expect(call).toBeLessThan(100);
      const res = await admin<{
        patterns: { pattern: string; done: boolean; cursor: string; deleted: number }[];
        done: boolean;
      }>("POST", "/admin/invalidate", { body });
      expect(res.status).toBe(200);
      const [step] = res.body.patterns;
      expect(step?.pattern).toBe(`${family}:*`);
      deleted += step?.deleted ?? 0;
      if (res.body.done) {
        expect(step?.cursor).toBe("0");
        break;
      }
      expect(step?.cursor).toMatch(/^[1-9]\d*$/);
      body = { patterns: [`${family}:*`], cursor: step?.cursor };
    }
    expect(deleted).toBe(40);
    expect(await cache.get(`${family}:7`)).toBeNull();
    expect((await cache.get(`${family}keep:1`))?.value).toBe("kept");
  });

  it("queues the event with async: true (202)", async () => {
    const queue = new FakeQueue();
    const key = `async:${++seq}`;
    await cache.set(key, "until the consumer runs");
    const res = await admin<{ queued: boolean; at: number; outboxId: number }>(
      "POST",
      "/admin/invalidate",
      {
        body: { keys: [key], tags: ["async-tag"], patterns: ["async:*"], async: true },
        env: { PURGE_QUEUE: queue },
      },
    );
    expect(res.status).toBe(202);
    expect(res.body.queued).toBe(true);
    // Recorded in the outbox first (test/workers/dead-letter.test.ts: what that is for).
    expect(res.body.outboxId).toBeGreaterThan(0);
    expect(queue.sent).toEqual([
      {
        keys: [key],
        tags: ["async-tag"],
        patterns: ["async:*"],
        origin: "admin",
        at: res.body.at,
        outboxIds: [res.body.outboxId],
      } satisfies InvalidationEvent,
    ]);
    // Nothing applied yet: that is the consumer's job.
    expect((await cache.get(key))?.value).toBe("until the consumer runs");
  });

  it("answers 503 when the queue is missing, 202 queued: false when it refuses (the outbox has it)", async () => {
    const none = await admin<ErrorBody>("POST", "/admin/invalidate", {
      body: { keys: ["q:1"], async: true },
      env: { PURGE_QUEUE: undefined },
    });
    expect(none.status).toBe(503);
    expect(none.body.error.code).toBe("queue_unavailable");
    // As every 503: when to come back, and not to be stored by anyone on the way.
    expect(none.headers.get("retry-after")).toBe("5");
    expect(none.headers.get("cache-control")).toBe("no-store");
    const queue = new FakeQueue();
    queue.fail = new Error("queue down (test)");
    const refused = await admin<{ queued: boolean; outboxId: number | null }>(
      "POST",
      "/admin/invalidate",
      { body: { keys: ["q:1"], async: true }, env: { PURGE_QUEUE: queue } },
    );
    expect(refused.status).toBe(202);
    expect(refused.body.queued).toBe(false);
    expect(refused.body.outboxId).toBeGreaterThan(0);
  });

  it.each([
    ["no names", {}, "(root)"],
    ["only empty arrays", { keys: [], tags: [] }, "(root)"],
    ["whitespace in a key", { keys: ["product 1"] }, "keys.0"],
    ["a glob in a key", { keys: ["product:*"] }, "keys.0"],
    ["a bracket in a tag", { tags: ["a[1]"] }, "tags.0"],
    ["a backslash in a key", { keys: ["a\\b"] }, "keys.0"],
    ["whitespace in a pattern", { patterns: ["product: *"] }, "patterns.0"],
    ["an empty key", { keys: [""] }, "keys.0"],
    ["a key over 512 characters", { keys: ["k".repeat(513)] }, "keys.0"],
    ["too many keys", { keys: Array.from({ length: 1001 }, (_, i) => `k:${i}`) }, "keys"],
    ["an unknown field", { keys: ["a:1"], purge: true }, "(root)"],
    ["a cursor for two patterns", { patterns: ["a:*", "b:*"], cursor: "12" }, "cursor"],
    ["a cursor that is not a number", { patterns: ["a:*"], cursor: "abc" }, "cursor"],
    ["a cursor above 2^64 - 1", { patterns: ["a:*"], cursor: "18446744073709551616" }, "cursor"],
    ["async as a string", { keys: ["a:1"], async: "yes" }, "async"],
  ])("rejects %s with 400", async (_, body, path) => {
    const res = await admin<ErrorBody>("POST", "/admin/invalidate", { body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.issues?.map((i) => i.path)).toContain(path);
  });

  it("rejects malformed JSON and a non-object body with 400", async () => {
    const malformed = await admin<ErrorBody>("POST", "/admin/invalidate", { body: "{keys:" });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("validation_failed");
    const list = await admin<ErrorBody>("POST", "/admin/invalidate", { body: ["a:1"] });
    expect(list.status).toBe(400);
  });
});

describe("GET /admin/stats", () => {
  it("reports counters with the hit ratio, hot keys, outbox lag, jobs and Redis memory", async () => {
    const sampler = new EdgeCache({ redis, prefix, hotKeys: { sampleRate: 1 } });
    const key = `stats:${++seq}`;
    await sampler.getOrLoad(key, async () => "v"); // a miss
    await sampler.getOrLoad(key, async () => "v"); // a hit
    await sampler.getOrLoad(key, async () => "v"); // a hit
    await sampler.flushStats();

    const res = await admin<{
      cache: { hit_ratio: number; hits: number; misses: number } | null;
      hotKeys: { key: string; score: number }[] | null;
      outbox: { pending: number; oldestAgeMs: number | null } | null;
      jobs: { warm: unknown; purge: unknown } | null;
      redis: Record<string, number | string | null>;
      errors: Record<string, string>;
    }>("GET", "/admin/stats");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = res.body;
    expect(body.errors).toEqual({});
    expect(typeof body.cache?.hit_ratio).toBe("number");
    expect(body.cache?.hits).toBeGreaterThanOrEqual(2);
    expect(body.cache?.misses).toBeGreaterThanOrEqual(1);
    expect(body.cache?.hit_ratio).toBeGreaterThan(0);
    expect(body.cache?.hit_ratio).toBeLessThanOrEqual(1);
    expect(body.hotKeys?.map((h) => h.key)).toContain(key);
    expect(typeof body.outbox?.pending).toBe("number");
    expect(body.jobs).toHaveProperty("warm");
    expect(body.jobs).toHaveProperty("purge");
    // Every figure is either there or null with a reason.
    for (const field of ["used_memory", "maxmemory", "evicted_keys", "expired_keys"]) {
      const value = body.redis[field];
      if (value === null) expect(body.redis.reason).toEqual(expect.any(String));
      else expect(typeof value).toBe("number");
    }
    // The local gateway forwards INFO to a real redis-server, which reports all of them.
    expect(body.redis.used_memory).toBeGreaterThan(0);
    expect(typeof body.redis.maxmemory_policy).toBe("string");
    expect(body.redis.evicted_keys).toBeGreaterThanOrEqual(0);
    expect(body.redis.reason).toBeNull();
  });

  it("keeps answering when Redis does not, saying why", async () => {
    const res = await admin<{
      cache: unknown;
      redis: { used_memory: null; reason: string };
      outbox: unknown;
      errors: Record<string, string>;
    }>("GET", "/admin/stats", { env: { UPSTASH_REDIS_REST_TOKEN: `refused-${prefix}` } });
    expect(res.status).toBe(200);
    expect(res.body.cache).toBeNull();
    expect(res.body.errors.cache).toMatch(/Unauthorized/);
    expect(res.body.redis.used_memory).toBeNull();
    expect(res.body.redis.reason).toMatch(/INFO failed/);
    expect(res.body.outbox).not.toBeNull();
  });
});

describe("GET /admin/entries/:key", () => {
  it("shows an entry, its version and state", async () => {
    const key = `ent:${++seq}`;
    await cache.writeThrough(key, { name: "thing" }, 3, { tags: ["enttag"] });
    const res = await admin<{
      key: string;
      state: string;
      version: number | null;
      entry: { value: unknown; version: number; tags: Record<string, string> } | null;
      currentTags: Record<string, string | null>;
    }>("GET", `/admin/entries/${encodeURIComponent(key)}?version=${encodeURIComponent(key)}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ key, state: "fresh", version: 3 });
    expect(res.body.entry).toMatchObject({ value: { name: "thing" }, version: 3 });
    expect(Object.keys(res.body.currentTags)).toEqual(["enttag"]);
  });

  it("reports an absent key as absent", async () => {
    const res = await admin<{ state: string; entry: unknown }>("GET", "/admin/entries/none:1");
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: "absent", entry: null });
  });

  it.each([
    ["whitespace", "/admin/entries/bad%20key"],
    ["a glob", "/admin/entries/product%3A*"],
    ["a bracket", "/admin/entries/a%5B1%5D"],
    ["a bad version key", "/admin/entries/ok%3A1?version=v%20x"],
  ])("answers 400 for %s", async (_, path) => {
    const res = await admin<ErrorBody>("GET", path);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
  });
});

describe("POST /admin/warm", () => {
  it("runs the warmer and returns its report", async () => {
    const sampler = new EdgeCache({ redis, prefix, hotKeys: { sampleRate: 1 } });
    const key = `warmme:${++seq}`;
    await sampler.getOrLoad(key, async () => "v");
    await cache.invalidate(key);
    const res = await admin<{
      hot: number;
      stale: number;
      unmatched: number;
      reloaded: number;
      redisRequests: number;
      stoppedEarly: string | null;
    }>("POST", "/admin/warm");
    expect(res.status).toBe(200);
    expect(res.body.hot).toBeGreaterThanOrEqual(1);
    // No domain warmable claims `warmme:` keys: counted, left to the read path (no freshness
    // read for them).
    expect(res.body.unmatched).toBeGreaterThanOrEqual(1);
    expect(res.body.redisRequests).toBeGreaterThanOrEqual(1);
    expect(res.body.stoppedEarly).toBeNull();
  });

  it("takes no body: a JSON content type with none (as many clients send) is fine", async () => {
    const res = await admin("POST", "/admin/warm", {
      body: "",
      headers: {
        "content-type": "application/json",
      },
    });
    expect(res.status).toBe(200);
  });
});

describe("a malformed JSON body is looked at after auth", () => {
  it("without a token: 401, not 400", async () => {
    const res = await callApi<ErrorBody>("POST", "/admin/invalidate", { prefix, body: "{keys:" });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
  });
});
