import { beforeAll, describe, expect, it } from "vitest";
import { api, type ErrorBody } from "./api";
import { clearPrefix, testRedis } from "./stack";

const prefix = "t_sessions";

interface Created {
  token: string;
  expiresInSeconds: number;
}

interface Session {
  userId: number;
  data: Record<string, unknown>;
  createdAt: string;
  sliding: boolean;
  ttlSeconds: number;
}

const create = (body: unknown) => api<Created & ErrorBody>("POST", "/sessions", { prefix, body });
const read = (token: string) => api<Session & ErrorBody>("GET", `/sessions/${token}`, { prefix });
const remove = (token: string) => api<ErrorBody>("DELETE", `/sessions/${token}`, { prefix });
const redisKey = (token: string) => `${prefix}:s:${token}`;

beforeAll(async () => {
  await clearPrefix(prefix);
});

describe("sessions", () => {
  it("creates, reads, deletes, then no longer finds a session", async () => {
    const data = { cart: [1, 2, 3], empty: [], nested: { flag: true, none: null }, note: "héllo" };
    const created = await create({ userId: 7, data, ttlSeconds: 120 });
    expect(created.status).toBe(201);
    expect(created.headers.get("cache-control")).toBe("no-store");
    expect(created.body.token).toMatch(/^[0-9a-f]{64}$/);
    expect(created.body.expiresInSeconds).toBe(120);
    const { token } = created.body;

    // Stored under the prefix, with its expiry set by the same SET.
    const ttl = await testRedis().ttl(redisKey(token));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(120);

    const got = await read(token);
    expect(got.status).toBe(200);
    expect(got.headers.get("cache-control")).toBe("no-store");
    expect(got.body).toMatchObject({ userId: 7, data, sliding: false });
    expect(Number.isNaN(Date.parse(got.body.createdAt))).toBe(false);
    expect(got.body.ttlSeconds).toBeGreaterThan(0);
    expect(got.body.ttlSeconds).toBeLessThanOrEqual(120);

    const deleted = await remove(token);
    expect(deleted.status).toBe(204);
    expect((await read(token)).status).toBe(404);
    const again = await remove(token);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe("not_found");
  });

  it("defaults to an hour and to empty data, and every token is new", async () => {
    const a = await create({ userId: 1 });
    const b = await create({ userId: 1 });
    expect(a.status).toBe(201);
    expect(a.body.expiresInSeconds).toBe(3600);
    expect(a.body.token).not.toBe(b.body.token);
    const got = await read(a.body.token);
    expect(got.body).toMatchObject({ userId: 1, data: {}, sliding: false });
    expect(got.body.ttlSeconds).toBeGreaterThan(60);
    expect(got.body.ttlSeconds).toBeLessThanOrEqual(3600);
  });

  it("renews a sliding session's TTL on read, and leaves a fixed one alone", async () => {
    const redis = testRedis();
    const sliding = await create({ userId: 2, ttlSeconds: 60, sliding: true });
    const fixed = await create({ userId: 2, ttlSeconds: 60 });
    // Age both sessions as if most of their lifetime had passed.
    await redis.expire(redisKey(sliding.body.token), 10);
    await redis.expire(redisKey(fixed.body.token), 10);

    const renewed = await read(sliding.body.token);
    expect(renewed.status).toBe(200);
    expect(renewed.body.sliding).toBe(true);
    expect(renewed.body.ttlSeconds).toBeGreaterThan(10);
    expect(renewed.body.ttlSeconds).toBeLessThanOrEqual(60);
    expect(await redis.ttl(redisKey(sliding.body.token))).toBeGreaterThan(10);

    const unchanged = await read(fixed.body.token);
    expect(unchanged.status).toBe(200);
    expect(unchanged.body.ttlSeconds).toBeLessThanOrEqual(10);
    expect(await redis.ttl(redisKey(fixed.body.token))).toBeLessThanOrEqual(10);
  });

  it("answers 404 for a well-formed token that was never issued", async () => {
    const res = await read("0".repeat(64));
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });

  it.each([
    ["too short", "abc"],
    ["upper case", "A".repeat(64)],
    ["too long", "a".repeat(65)],
    ["not hex", "g".repeat(64)],
    ["a key pattern", `${"a".repeat(63)}*`],
    ["an encoded separator", `${"a".repeat(60)}%3Ax`],
  ])("rejects a token that is %s with 400", async (_, token) => {
    for (const res of [await read(token), await remove(token)]) {
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details?.issues?.[0]?.path).toBe("token");
    }
  });

  it.each([
    ["userId 0", { userId: 0 }, "userId"],
    ["userId as a string", { userId: "7" }, "userId"],
    ["no userId", { data: {} }, "userId"],
    ["ttlSeconds below 60", { userId: 1, ttlSeconds: 59 }, "ttlSeconds"],
    ["ttlSeconds above a day", { userId: 1, ttlSeconds: 86_401 }, "ttlSeconds"],
    ["data as an array", { userId: 1, data: [1] }, "data"],
    ["sliding as a string", { userId: 1, sliding: "yes" }, "sliding"],
    ["an unknown field", { userId: 1, admin: true }, "(root)"],
    ["data over 4 KiB", { userId: 1, data: { blob: "x".repeat(5000) } }, "data"],
  ])("rejects %s with 400", async (_, body, path) => {
    const res = await create(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.issues?.some((i) => i.path === path)).toBe(true);
  });

  it("rejects malformed JSON with 400 and a body over the request limit with 413", async () => {
    const malformed = await create("{userId: 1}");
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.details?.issues?.length).toBeGreaterThan(0);

    const huge = await create({ userId: 1, data: { blob: "x".repeat(70_000) } });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe("payload_too_large");
  });
});
