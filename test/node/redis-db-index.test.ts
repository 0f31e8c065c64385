import { randomBytes } from "node:crypto";
import { Redis as IORedis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { checkRedisDb, redisDbIndex } from "../../tools/lib/services";
import { startGateway } from "../../tools/upstash-gateway/server";

/**
 * A Redis DB index that is not a number, or that the server does not have, is refused where it
 * comes in. ioredis given one logs an error and goes on in DB 0: the test setup then flushed
 * DB 0, `npm run dev` crashed on its first request, and a gateway token meant for DB 16 read and
 * wrote DB 0 (found by a first-time-user audit).
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

describe("redisDbIndex", () => {
  it("takes a whole number, the fallback when unset, and refuses anything else saying what to set", () => {
    expect(redisDbIndex(undefined, "REDIS_DB", 0)).toBe(0);
    expect(redisDbIndex("", "REDIS_DB", 1)).toBe(1);
    expect(redisDbIndex(" 9 ", "REDIS_DB", 0)).toBe(9);
    for (const bad of ["nine", "-1", "1.5", "0x2", "1e1"]) {
      expect(() => redisDbIndex(bad, "TEST_REDIS_DB", 1)).toThrow(
        /TEST_REDIS_DB=.* is not a Redis DB index: set a whole number/,
      );
    }
  });
});

describe("a DB index the server does not have", () => {
  const direct = new IORedis(REDIS_URL, { lazyConnect: true });
  const marker = `db-index-test:${randomBytes(6).toString("hex")}`;
  afterAll(async () => {
    await direct.del(marker);
    direct.disconnect();
  });

  it("checkRedisDb refuses it before anything runs", async () => {
    await expect(checkRedisDb(REDIS_URL, 9999, "TEST_REDIS_DB")).rejects.toThrow(
      /TEST_REDIS_DB=9999: the Redis at .* refuses DB 9999 .*databases/,
    );
    await expect(checkRedisDb(REDIS_URL, 0, "TEST_REDIS_DB")).resolves.toBeUndefined();
  });

  it("a gateway token on it answers 500 saying so, and touches no other DB", async () => {
    await direct.set(marker, "db 0 keeps this"); // DB 0, where ioredis fell back to
    const token = `db-index-${randomBytes(6).toString("hex")}`;
    const gateway = await startGateway({
      port: 0,
      redisUrl: REDIS_URL,
      tokens: { [token]: { db: 9999 } },
    });
    try {
      const res = await fetch(`${gateway.url}/`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(["DEL", marker]),
      });
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toMatch(/refuses DB 9999/);
    } finally {
      await gateway.close();
    }
    expect(await direct.get(marker)).toBe("db 0 keeps this");
  });
});
