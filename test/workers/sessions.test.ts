import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { api, type ErrorBody } from "./api";
import { clearPrefix, gatewayControl, stack, testRedis } from "./stack";

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
    // A write's answer is never stored, a body-less one included.
    expect(deleted.headers.get("cache-control")).toBe("no-store");
    const gone = await read(token);
    expect(gone.status).toBe(404);
    expect(gone.headers.get("cache-control")).toBe("no-store");
    const again = await remove(token);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe("not_found");
  });

  it("keeps every key of data as sent, __proto__ included", async () => {
    // Sent as text: a JS object literal would not hold "__proto__" as a key.
    const created = await create('{"userId":5,"data":{"__proto__":{"x":1},"a":2}}');
    expect(created.status).toBe(201);
    const got = await api<Session>("GET", `/sessions/${created.body.token}`, { prefix });
    expect(got.status).toBe(200);
    const text = JSON.stringify(got.body.data);
    expect(text).toBe('{"__proto__":{"x":1},"a":2}');
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

  it("renews a sliding session whatever its data: nested 1,000 deep, or a lone surrogate", async () => {
    const redis = testRedis();
    // JSON.stringify writes both; Lua's cjson refuses to decode either (it used to decide the
    // renewal by decoding the whole session, and skipped it without a word).
    let deep: unknown = [];
    for (let i = 0; i < 1_100; i++) deep = [deep];
    for (const data of [{ deep }, { s: "\ud800" }]) {
      const created = await create({ userId: 3, ttlSeconds: 60, sliding: true, data });
      expect(created.status).toBe(201);
      await redis.expire(redisKey(created.body.token), 10);
      const renewed = await read(created.body.token);
      expect(renewed.status).toBe(200);
      expect(renewed.body.ttlSeconds).toBeGreaterThan(10);
      expect(JSON.stringify(renewed.body.data)).toBe(JSON.stringify(data));
    }
  });

  it("still renews a session stored by an earlier release (other field order)", async () => {
    const redis = testRedis();
    const created = await create({ userId: 4, ttlSeconds: 60, sliding: true });
    const key = redisKey(created.body.token);
    const stored = await redis.get<Record<string, unknown>>(key);
    const { userId, data, createdAt, ttlSeconds, sliding } = stored ?? {};
    await redis.set(key, { userId, data, createdAt, ttlSeconds, sliding }, { ex: 10 });
    const renewed = await read(created.body.token);
    expect(renewed.status).toBe(200);
    expect(renewed.body.ttlSeconds).toBeGreaterThan(10);
  });

  it("a read is one script that locks only its key on Upstash (allow-key-locking), never the database", async () => {
    const token = stack.spareGatewayTokens.sessions;
    const env = { UPSTASH_REDIS_REST_TOKEN: token };
    const created = await api<Created>("POST", "/sessions", {
      prefix,
      env,
      body: { userId: 5, sliding: true },
    });
    expect(created.status).toBe(201);
    await gatewayControl("reset", { token });
    const got = await api<Session>("GET", `/sessions/${created.body.token}`, { prefix, env });
    expect(got.status).toBe(200);
    const stats = (await gatewayControl("stats", { token })) as {
      scripts?: { globalLock?: number; keyLocked?: number };
    };
    expect(stats.scripts?.globalLock).toBe(0);
    expect(stats.scripts?.keyLocked).toBeGreaterThanOrEqual(1);
  });

  it("refuses a session for a user that does not exist with 422 invalid_reference, and stores nothing", async () => {
    const before = await testRedis().keys(`${prefix}:s:*`);
    const refused = await create({ userId: 999_999, ttlSeconds: 60 });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("invalid_reference");
    expect(refused.body.error.message).toContain("999999");
    expect(refused.body.error.details).toMatchObject({ issues: [{ path: "userId" }] });
    expect(refused.headers.get("cache-control")).toBe("no-store");
    expect(await testRedis().keys(`${prefix}:s:*`)).toEqual(before);
    // The unknown id is cached as a negative entry: asked again, Postgres is not.
    expect(await testRedis().exists(`${prefix}:e:user:999999`)).toBe(1);
    expect((await create({ userId: 999_999 })).status).toBe(422);
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
    ["data as null", { userId: 1, data: null }, "data"],
    ["data as a string", { userId: 1, data: "x" }, "data"],
    ["sliding as a string", { userId: 1, sliding: "yes" }, "sliding"],
    ["an unknown field", { userId: 1, admin: true }, "(root)"],
    ["data over 4 KiB", { userId: 1, data: { blob: "x".repeat(5000) } }, "data"],
  ])("rejects %s with 400", async (_, body, path) => {
    const res = await create(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.issues?.some((i) => i.path === path)).toBe(true);
  });

  it("rejects a number JSON cannot carry (1e400 parses as Infinity) anywhere in data with 400", async () => {
    const before = await testRedis().keys(`${prefix}:s:*`);
    // Sent as text: JSON.stringify would write Infinity as null, which is what used to be stored.
    for (const [body, path] of [
      ['{"userId":1,"data":{"x":1e400}}', "data.x"],
      ['{"userId":1,"data":{"a":[1,{"b":-1e999}]}}', "data.a.1.b"],
    ] as const) {
      const res = await create(body);
      expect(res.status, body).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details?.issues?.map((i) => i.path)).toEqual([path]);
    }
    expect(await testRedis().keys(`${prefix}:s:*`)).toEqual(before);
    // Large but finite numbers are data like any other.
    const finite = await create('{"userId":1,"data":{"x":1e300,"y":-5e-324}}');
    expect(finite.status).toBe(201);
    const got = await read(finite.body.token);
    expect(got.body.data).toEqual({ x: 1e300, y: -5e-324 });
  });

  it("rejects an integer beyond 2^53 (it would be stored as another number) and keeps exact ones", async () => {
    const before = await testRedis().keys(`${prefix}:s:*`);
    // Sent as text: a JS number literal could not even hold what the client sends.
    for (const literal of ["9007199254740993", "-12345678901234567891"]) {
      const res = await create(`{"userId":1,"data":{"ids":[1,{"snowflake":${literal}}]}}`);
      expect(res.status, literal).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details?.issues?.[0]?.message).toContain(literal);
      expect(res.body.error.details?.issues?.[0]?.message).toMatch(/send it as a string/);
      expect(res.headers.get("cache-control")).toBe("no-store");
    }
    expect(await testRedis().keys(`${prefix}:s:*`)).toEqual(before);
    // The same digits in a string, 2^53 itself and long decimals are data like any other.
    const exact = await create(
      '{"userId":1,"data":{"id":"9007199254740993","max":9007199254740992,"big":1e30,"pi":3.14159265358979323846}}',
    );
    expect(exact.status).toBe(201);
    expect((await read(exact.body.token)).body.data).toEqual({
      id: "9007199254740993",
      max: 9007199254740992,
      big: 1e30,
      pi: Math.PI,
    });
    // Malformed JSON with a long integer in it is still answered as malformed.
    const malformed = await create('{"userId":1,"data":{"x":9007199254740993,}}');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toMatch(/Malformed JSON/);
  });

  it("data nested 30,000 deep is a 400 on data, not a crash (with or without an Infinity in it)", async () => {
    const depth = 30_000;
    for (const leaf of ["", "1e400"]) {
      const body = `{"userId":1,"data":{"d":${"[".repeat(depth)}${leaf}${"]".repeat(depth)}}}`;
      const res = await create(body);
      expect(res.status).toBe(400);
      expect(res.body.error.details?.issues?.map((i) => i.path)).toEqual(["data"]);
    }
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

describe("what a failing Redis leaves in the logs (security review)", () => {
  // The token is the credential, the data the client's: neither belongs in a log line. A path
  // logged as is carried the token, and @upstash/redis's errors quote the whole command.
  const token = stack.spareGatewayTokens.sessions;
  const env = { UPSTASH_REDIS_REST_TOKEN: token, REDIS_TIMEOUT_MS: "300" };

  const captureLogs = () => {
    const lines: string[] = [];
    const keep = (...args: unknown[]) => {
      lines.push(
        args
          .map((a) => (a instanceof Error ? `${a.message} ${String(a.cause ?? "")}` : String(a)))
          .join(" "),
      );
    };
    const spies = (["warn", "error", "log"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation(keep),
    );
    return {
      text: () => lines.join("\n"),
      restore: () => {
        for (const spy of spies) spy.mockRestore();
      },
    };
  };

  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  it("a read that fails logs its path without the token", async () => {
    const created = await create({ userId: 2 });
    expect(created.status).toBe(201);
    await gatewayControl("faults", { token, body: { failRate: 1, failStatus: 503 } });
    const logs = captureLogs();
    try {
      const res = await api<ErrorBody>("GET", `/sessions/${created.body.token}`, { prefix, env });
      expect(res.status).toBe(503);
      expect(logs.text()).toContain("GET /sessions/<token>: redis unavailable");
      expect(logs.text()).not.toContain(created.body.token);
    } finally {
      logs.restore();
    }
  });

  it("a create Redis refuses logs no token and none of the session's data", async () => {
    const secret = `card-4111111111111111-${Date.now()}`;
    await gatewayControl("faults", {
      token,
      body: { failRate: 1, failStatus: 400, failError: "ERR DB capacity quota exceeded" },
    });
    const logs = captureLogs();
    try {
      const res = await api("POST", "/sessions", {
        prefix,
        env,
        body: { userId: 2, data: { secret } },
      });
      expect(res.status).toBe(503);
      expect(logs.text()).toContain("command not shown");
      expect(logs.text()).not.toContain(secret);
      expect(logs.text()).not.toMatch(/:s:[0-9a-f]{64}/);
    } finally {
      logs.restore();
    }
  });
});
