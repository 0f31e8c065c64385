import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { and, desc, eq, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { cacheOutbox } from "../../db/schema";
import worker from "../../functions/index";
import { DatabaseUnavailableError } from "../../src/db/errors";
import { createApp } from "../../src/http/app";
import { findCause } from "../../src/http/errors";
import { apiFor, type ErrorBody, fetchWorker } from "./api";
import { withDb } from "./db";
import { FakeQueue, within, withServices } from "./helpers";
import { clearPrefix, gatewayControl, scanKeys, stack, testRedis } from "./stack";

/**
 * Issue 8, points 1 and 2: every failure answers the JSON error shape; Postgres stopped or hung
 * is a 503 database_unavailable with Retry-After (or a fail-safe value where one is cached);
 * every Postgres connect/query and every Upstash request has a deadline; a failing loader is
 * backed off. Against the real gateway, the real Postgres through the WebSocket proxy, a port
 * where nothing listens (`deadPostgresUrl`) and a listener that never answers (`hungPostgresUrl`).
 */

/** A generous margin over a deadline: the assertion is "it answered", not a benchmark. */
const MARGIN_MS = 2500;

const dead = { DATABASE_URL: stack.deadPostgresUrl };
const hung = (connectMs = 500) => ({
  DATABASE_URL: stack.hungPostgresUrl,
  DB_CONNECT_TIMEOUT_MS: String(connectMs),
});

/** Nothing a client could use to learn about the server: no stack, path, address or driver text. */
function expectNoInternals(text: string) {
  expect(text).not.toMatch(
    /\n\s+at |\.ts\b|\.mjs\b|node_modules|\/work\/|127\.0\.0\.1|postgres:\/\/|WebSocket|ErrorEvent/,
  );
}

/** 503 + Retry-After with the JSON error `code`, and nothing internal in the body. */
function expectUnavailable(
  res: { status: number; headers: Headers; body: unknown },
  code: "database_unavailable" | "redis_unavailable",
) {
  expect(res.status).toBe(503);
  expect(res.headers.get("content-type")).toContain("application/json");
  expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  expect((res.body as ErrorBody).error.code).toBe(code);
  expectNoInternals(JSON.stringify(res.body));
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await work();
  return { value, ms: Date.now() - started };
}

describe("Postgres stopped (nothing listens)", () => {
  const api = apiFor("fail-dead");

  it("answers uncached reads with 503 database_unavailable + Retry-After", async () => {
    for (const path of ["/products/21", "/products?limit=3", "/categories", "/users/3"]) {
      const res = await api("GET", path, { env: dead });
      expectUnavailable(res, "database_unavailable");
    }
  });

  it("answers writes with the JSON 503, not a text/plain 500 with a stack trace", async () => {
    // The driver rejects these with a WebSocket ErrorEvent, not an Error: before the fix it
    // escaped Hono's onError and workerd answered `500 text/plain` with the stack.
    const writes: [string, string, unknown][] = [
      ["PATCH", "/products/22", { priceCents: 1234 }],
      ["POST", "/products", { sku: "dead-db-1", name: "x", categoryId: 1, priceCents: 1 }],
      ["POST", "/products/22/reserve", { quantity: 1 }],
      ["PATCH", "/categories/2", { name: "renamed while down" }],
      ["PATCH", "/users/4", { name: "renamed while down" }],
      ["DELETE", "/products/22", undefined],
    ];
    for (const [method, path, body] of writes) {
      const res = await api(method, path, { env: dead, body });
      expectUnavailable(res, "database_unavailable");
    }
  });

  it("answers /health naming the dependency without internals", async () => {
    const res = await api<{ status: string; down: string[]; postgres: { problem: string } }>(
      "GET",
      "/health",
      { env: dead },
    );
    expect(res.status).toBe(503);
    expect(res.body.down).toEqual(["postgres"]);
    expect(res.body.postgres.problem).toBe("unreachable");
    expectNoInternals(JSON.stringify(res.body));
  });
});

describe("Postgres slow (every answer held, stack.slowPostgresUrl)", () => {
  const api = apiFor(`fslow${Date.now() % 1e6}`);
  const slow = { DATABASE_URL: stack.slowPostgresUrl };
  const loads = async () => {
    const res = await api<{ cache: Record<string, number> | null }>("GET", "/admin/stats", {
      admin: true,
    });
    return Number(res.body.cache?.loads ?? 0);
  };

  it("concurrent reads of a cold key whose query outlives the lease share one query", async () => {
    // A load here is a connect and a query, each held by the forwarder: longer than the lease
    // (2 s) and the engine's default wait budget (2.5 s). Before the engine kept a lease alive
    // for a load with a deadline (the app gives its loaders one: the DB deadlines' sum), the
    // waiting requests took the leader for dead after 2 s and queried too: one query each.
    const before = await loads();
    const timedReads = await timed(() =>
      Promise.all(Array.from({ length: 8 }, () => api("GET", "/products/81", { env: slow }))),
    );
    expect(timedReads.value.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(timedReads.value.every((r) => (r.body as { id: number }).id === 81)).toBe(true);
    expect(timedReads.ms).toBeGreaterThan(2_500); // the load did outlive lease and budget
    expect((await loads()) - before).toBe(1);
    // The fill landed under the kept lease: the next read is a hit, without Postgres.
    const again = await api("GET", "/products/81", { env: dead });
    expect(again.status).toBe(200);
    expect(again.headers.get("x-cache")).toBe("HIT");
  }, 20_000);
});

describe("Postgres hung (accepts, never answers)", () => {
  const api = apiFor("fail-hung");

  it("answers an uncached read with 503 before the connect deadline plus a margin", async () => {
    const { value: res, ms } = await timed(() => api("GET", "/products/31", { env: hung(500) }));
    expectUnavailable(res, "database_unavailable");
    expect(ms).toBeLessThan(500 + MARGIN_MS);
  });

  it("answers writes with 503 before the connect deadline plus a margin", async () => {
    for (const [method, path, body] of [
      ["PATCH", "/products/32", { priceCents: 99 }],
      ["POST", "/products/32/reserve", { quantity: 1 }],
    ] as const) {
      const { value: res, ms } = await timed(() => api(method, path, { env: hung(500), body }));
      expectUnavailable(res, "database_unavailable");
      expect(ms).toBeLessThan(500 + MARGIN_MS);
    }
  });

  it("reports the hang on /health as a timeout, within its probe deadline", async () => {
    // The driver would wait 4 s to connect: the probe's own 3 s deadline answers first. Timed to
    // the response, not to the end of waitUntil (which closes the pool after the driver gives up).
    const ctx = createExecutionContext();
    const started = Date.now();
    const res = await worker.fetch(
      new Request("http://edgecache.test/health"),
      { ...env, CACHE_PREFIX: "fail-hung", ...hung(4000) },
      ctx,
    );
    const ms = Date.now() - started;
    const body = (await res.json()) as { down: string[]; postgres: { problem: string } };
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(503);
    expect(body.down).toEqual(["postgres"]);
    expect(body.postgres.problem).toBe("timeout");
    expect(ms).toBeLessThan(3000 + MARGIN_MS);
  });
});

describe("Postgres query deadline", () => {
  it("fails a statement that outlives DB_QUERY_TIMEOUT_MS and releases its connection", async () => {
    // pg_sleep(5) holds the statement; the deadline is 300 ms. withServices disposes of the pool
    // before returning, so the total also proves the timed-out connection was not waited for.
    const { value: error, ms } = await timed(() =>
      withServices("fail-query", { DB_QUERY_TIMEOUT_MS: "300" }, (s) =>
        s.db.execute(sql`select pg_sleep(5)`).then(
          () => null,
          (e: unknown) => e,
        ),
      ),
    );
    expect(findCause(error, DatabaseUnavailableError)).toBeInstanceOf(DatabaseUnavailableError);
    expect(ms).toBeLessThan(300 + MARGIN_MS);
  });

  it("fails a transaction whose statement hangs, without waiting again for the ROLLBACK", async () => {
    const { value: error, ms } = await timed(() =>
      withServices("fail-query", { DB_QUERY_TIMEOUT_MS: "300" }, (s) =>
        s.db
          .transaction(async (tx) => {
            await tx.execute(sql`select 1`);
            await tx.execute(sql`select pg_sleep(5)`);
          })
          .then(
            () => null,
            (e: unknown) => e,
          ),
      ),
    );
    expect(findCause(error, DatabaseUnavailableError)).toBeInstanceOf(DatabaseUnavailableError);
    expect(ms).toBeLessThan(300 + MARGIN_MS);
  });

  it("hands a pooled connection out again with the deadline intact, and closes the pool", async () => {
    // The pool reuses one client for sequential statements; each checkout is guarded afresh
    // and released for real, so dispose (inside withServices) does not wait on a lost client.
    const { value, ms } = await timed(() =>
      withServices("fail-query", { DB_QUERY_TIMEOUT_MS: "300" }, async (s) => {
        const before = await s.db.execute(sql`select pg_backend_pid() as pid`);
        await s.db.transaction(async (tx) => tx.execute(sql`select 1`));
        const again = await s.db.execute(sql`select pg_backend_pid() as pid`);
        const slow = await s.db.execute(sql`select pg_sleep(5)`).catch((e: unknown) => e);
        return { same: before.rows[0]?.pid === again.rows[0]?.pid, slow };
      }),
    );
    expect(value.same).toBe(true);
    expect(findCause(value.slow, DatabaseUnavailableError)).toBeInstanceOf(
      DatabaseUnavailableError,
    );
    expect(ms).toBeLessThan(300 + MARGIN_MS);
  });

  it("leaves ordinary SQL errors alone (they are not unavailability)", async () => {
    const error = await withServices("fail-query", {}, (s) =>
      s.db.execute(sql`select 1/0`).then(
        () => null,
        (e: unknown) => e,
      ),
    );
    expect(error).toBeInstanceOf(Error);
    expect(findCause(error, DatabaseUnavailableError)).toBeUndefined();
  });
});

/** Moves every entry under `prefix` past its grace window (kept only for fail-safe). */
async function expireIntoFailSafe(prefix: string): Promise<number> {
  const redis = testRedis();
  const past = Date.now() - 1000;
  let n = 0;
  for await (const keys of scanKeys(redis, `${prefix}:e:*`, 200)) {
    for (const key of keys) {
      await redis.hset(key, { fu: past, su: past });
      n++;
    }
  }
  return n;
}

describe("fail-safe while Postgres is down", () => {
  const prefix = "fail-safe";
  const api = apiFor(prefix);
  const paths = ["/products/41", "/products?limit=4", "/categories", "/categories/3", "/users/5"];

  it("serves every cached read past its grace window, marked STALE + X-Cache-Fail-Safe", async () => {
    await clearPrefix(prefix);
    const fresh = new Map<string, unknown>();
    for (const path of paths) {
      const res = await api("GET", path);
      expect(res.status, path).toBe(200);
      fresh.set(path, res.body);
    }
    expect(await expireIntoFailSafe(prefix)).toBe(paths.length);

    for (const env of [dead, hung(500)]) {
      for (const path of paths) {
        const res = await api("GET", path, { env });
        expect(res.status, path).toBe(200);
        expect(res.headers.get("x-cache"), path).toBe("STALE");
        expect(res.headers.get("x-cache-fail-safe"), path).toBe("1");
        expect(res.body, path).toEqual(fresh.get(path));
      }
    }

    // Postgres back (and the backoff interval over): the next read reloads.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const back = await api("GET", "/products/41");
    expect(back.status).toBe(200);
    expect(back.headers.get("x-cache")).toBe("MISS");
    expect(back.headers.get("x-cache-fail-safe")).toBeNull();
  });
});

describe("loader backoff", () => {
  const api = apiFor("fail-backoff");

  it("does not call the source again within LOADER_BACKOFF_MS, then does", async () => {
    await clearPrefix("fail-backoff");
    const backoff = { LOADER_BACKOFF_MS: "1500" };
    // 1. A hung Postgres: the loader waits out its connect deadline and fails.
    const first = await timed(() =>
      api("GET", "/products/51", { env: { ...hung(500), ...backoff } }),
    );
    expectUnavailable(first.value, "database_unavailable");
    expect(first.value.headers.get("retry-after")).toBe("2");
    // 2. Postgres is fine again, but within the interval the loader is not called: still 503,
    //    at once. Only a skipped loader can explain a 503 from a healthy database.
    const second = await timed(() => api("GET", "/products/51", { env: backoff }));
    expectUnavailable(second.value, "database_unavailable");
    // 3. Another key is not affected.
    expect((await api("GET", "/products/52", { env: backoff })).status).toBe(200);
    // 4. After the interval the source is tried again.
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const third = await api("GET", "/products/51", { env: backoff });
    expect(third.status).toBe(200);
    expect(third.headers.get("x-cache")).toBe("MISS");
  });
});

describe("connect breaker", () => {
  const api = apiFor("fail-breaker");
  // Its own circuit: the breaker is keyed by the connection target, and other tests of this
  // file trip the one of the plain hung URL.
  const target = (name: string) => ({
    DATABASE_URL: `${stack.hungPostgresUrl}?application_name=${name}`,
    DB_CONNECT_TIMEOUT_MS: "1500",
    LOADER_BACKOFF_MS: "0",
  });

  it("fails other cold keys at once after a connect timed out, instead of each waiting for it", async () => {
    const env = { ...target("breaker-on"), DB_BREAKER_MS: "5000" };
    const first = await timed(() => api("GET", "/products/71", { env }));
    expectUnavailable(first.value, "database_unavailable");
    expect(first.ms).toBeGreaterThanOrEqual(1400); // waited out the connect deadline
    // Other keys (so the loader backoff cannot be what answers): no second wait.
    for (const id of [72, 73]) {
      const next = await timed(() => api("GET", `/products/${id}`, { env }));
      expectUnavailable(next.value, "database_unavailable");
      expect(next.ms).toBeLessThan(1000);
    }
    const write = await timed(() => api("PATCH", "/products/74", { env, body: { priceCents: 5 } }));
    expectUnavailable(write.value, "database_unavailable");
    expect(write.ms).toBeLessThan(1000);
  });

  it("is off with DB_BREAKER_MS=0: every cold key waits out the deadline", async () => {
    const env = { ...target("breaker-off"), DB_BREAKER_MS: "0" };
    expectUnavailable(await api("GET", "/products/75", { env }), "database_unavailable");
    const next = await timed(() => api("GET", "/products/76", { env }));
    expectUnavailable(next.value, "database_unavailable");
    expect(next.ms).toBeGreaterThanOrEqual(1400);
  });
});

describe("Redis hung (gateway latency injection)", () => {
  const token = stack.spareGatewayTokens.failures;
  const api = apiFor("fail-redis");
  const slowRedis = { UPSTASH_REDIS_REST_TOKEN: token, REDIS_TIMEOUT_MS: "300" };

  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  it("serves reads from Postgres (BYPASS) before the Redis deadline plus a margin", async () => {
    await gatewayControl("faults", { token, body: { latencyMs: 5000 } });
    const { value: res, ms } = await timed(() => api("GET", "/products/61", { env: slowRedis }));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache")).toBe("BYPASS");
    expect((res.body as { id: number }).id).toBe(61);
    expect(ms).toBeLessThan(300 + MARGIN_MS);
  });

  it("acknowledges writes (the event goes to the queue) before the deadline plus a margin", async () => {
    await gatewayControl("faults", { token, body: { latencyMs: 5000 } });
    const { value: res, ms } = await timed(() =>
      api("PATCH", "/products/62", { env: slowRedis, body: { priceCents: 777 } }),
    );
    expect(res.status).toBe(200);
    expect((res.body as { priceCents: number }).priceCents).toBe(777);
    expect(ms).toBeLessThan(300 + MARGIN_MS);
  });

  it("reports Redis as timed out on /health", async () => {
    await gatewayControl("faults", { token, body: { latencyMs: 5000 } });
    const res = await api<{ down: string[]; redis: { problem: string } }>("GET", "/health", {
      env: slowRedis,
    });
    expect(res.status).toBe(503);
    expect(res.body.down).toEqual(["redis"]);
    expect(res.body.redis.problem).toBe("timeout");
  });
});

describe("Redis down or hung: sessions, which live only in Redis", () => {
  const token = stack.spareGatewayTokens.failures;
  const api = apiFor("fail-sessions");
  const redis = { UPSTASH_REDIS_REST_TOKEN: token, REDIS_TIMEOUT_MS: "300" };
  const issued = "ab".repeat(32);

  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  for (const [fault, body] of [
    ["failing (HTTP 503)", { failRate: 1, failMode: "status", failStatus: 503 }],
    ["hung (past REDIS_TIMEOUT_MS)", { latencyMs: 5000 }],
  ] as const) {
    it(`answers create, read and delete with 503 redis_unavailable + Retry-After when Redis is ${fault}`, async () => {
      await gatewayControl("faults", { token, body });
      const calls = [
        () => api("POST", "/sessions", { env: redis, body: { userId: 1 } }),
        () => api("GET", `/sessions/${issued}`, { env: redis }),
        () => api("DELETE", `/sessions/${issued}`, { env: redis }),
      ];
      for (const call of calls) {
        const { value: res, ms } = await timed(call);
        expectUnavailable(res, "redis_unavailable");
        // Nor how the call to Redis failed, or where the gateway is.
        expect(JSON.stringify(res.body)).not.toMatch(/aborted|timeout|fetch failed|8079|gateway/i);
        // The rate limiter's own deadline (500 ms) plus the Redis deadline, plus a margin.
        expect(ms).toBeLessThan(500 + 300 + MARGIN_MS);
      }
    });
  }
});

describe("Redis down: the admin routes that need it", () => {
  const token = stack.spareGatewayTokens.failures;
  const admin = apiFor("fail-admin", { admin: true });
  const redis = { UPSTASH_REDIS_REST_TOKEN: token, REDIS_TIMEOUT_MS: "300" };

  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  it("answer 503 redis_unavailable + Retry-After, with the driver's reason for the operator", async () => {
    await gatewayControl("faults", {
      token,
      body: { failRate: 1, failMode: "status", failStatus: 503 },
    });
    for (const [method, path, body] of [
      ["GET", "/admin/entries/product:5", undefined],
      ["POST", "/admin/invalidate", { keys: ["product:5"] }],
      // Patterns alone used to answer 200 with the failure inside, nothing purged (an audit).
      ["POST", "/admin/invalidate", { patterns: ["product:*"] }],
    ] as const) {
      const res = await admin(method, path, { env: redis, body });
      expect(res.status, `${method} ${path}`).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect((res.body as ErrorBody).error.code).toBe("redis_unavailable");
    }
  });
});

describe("Queue hung (a producer that never answers)", () => {
  const token = stack.spareGatewayTokens.failures;
  const prefix = `fq${Date.now().toString(36)}`;
  const api = apiFor(prefix);
  const admin = apiFor(prefix, { admin: true });
  const deadlines = { REDIS_TIMEOUT_MS: "300", QUEUE_TIMEOUT_MS: "300" };

  afterEach(async () => {
    await gatewayControl("reset", { token });
  });

  it("acknowledges a write whose Redis apply failed within the Redis and queue deadlines; its row waits for the cron", async () => {
    await gatewayControl("faults", {
      token,
      body: { failRate: 1, failMode: "status", failStatus: 503 },
    });
    const queue = new FakeQueue();
    queue.hang = true;
    const env = { ...deadlines, UPSTASH_REDIS_REST_TOKEN: token, PURGE_QUEUE: queue };
    const { value: res, ms } = await timed(() =>
      within(
        300 + 300 + 2 * MARGIN_MS,
        api("PATCH", "/products/64", { env, body: { priceCents: 779 } }),
      ),
    );
    if (res === "no answer") throw new Error(`the write got no answer within ${ms} ms`);
    expect(res.status).toBe(200);
    expect((res.body as { priceCents: number }).priceCents).toBe(779);
    expect(ms).toBeLessThan(300 + 300 + MARGIN_MS);
    expect(queue.calls).toBe(1);
    // Delivery "deferred": the committed outbox row stays pending for the cron to drain.
    const [row] = await withDb((db) =>
      db
        .select()
        .from(cacheOutbox)
        .where(
          and(
            eq(cacheOutbox.prefix, prefix),
            sql`${cacheOutbox.event}->'keys' @> ${JSON.stringify(["product:64"])}::jsonb`,
          ),
        )
        .orderBy(desc(cacheOutbox.id))
        .limit(1),
    );
    expect(row?.processedAt).toBeNull();
  });

  it("answers POST /admin/invalidate async within the queue deadline: 202 queued: false (the outbox has it), 503 queue_unavailable + Retry-After without Postgres", async () => {
    const queue = new FakeQueue();
    queue.hang = true;
    const call = (env: Record<string, unknown>) =>
      timed(() =>
        within(
          300 + 2 * MARGIN_MS,
          admin<{ queued: boolean } & ErrorBody>("POST", "/admin/invalidate", {
            env: { ...deadlines, PURGE_QUEUE: queue, ...env },
            body: { tags: ["hung-queue"], async: true },
          }),
        ),
      );
    const { value: recorded, ms } = await call({});
    if (recorded === "no answer") throw new Error(`the admin call got no answer within ${ms} ms`);
    expect(recorded.status).toBe(202);
    expect(recorded.body.queued).toBe(false);
    expect(ms).toBeLessThan(300 + MARGIN_MS);
    expect(queue.calls).toBe(1);

    const { value: res, ms: ms2 } = await call(dead);
    if (res === "no answer") throw new Error(`the admin call got no answer within ${ms2} ms`);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe("queue_unavailable");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(ms2).toBeLessThan(300 + MARGIN_MS);
    expect(queue.calls).toBe(2);
  });
});

describe("one error path", () => {
  it("answers a thrown non-Error in the JSON shape (it used to escape onError)", async () => {
    const app = createApp();
    app.get("/__throws-event", () => {
      throw new Event("error"); // what the Neon driver rejects with when a WebSocket fails
    });
    app.get("/__throws-string", () => {
      throw "a string";
    });
    for (const path of ["/__throws-event", "/__throws-string"]) {
      const res = await app.request(path, {}, { ...env, CACHE_PREFIX: "fail-app" });
      expect(res.status).toBe(500);
      expect(res.headers.get("content-type")).toContain("application/json");
      const body = (await res.json()) as ErrorBody;
      expect(body.error.code).toBe("internal_error");
      expectNoInternals(JSON.stringify(body));
    }
  });

  it("answers a load past its loadTimeout as 503 database_unavailable, not a 500", async () => {
    // The app's loaders each keep the DB deadlines; loadTimeout is their sum, reached when
    // several queries of one load are each slow but within their own deadline.
    const app = createApp();
    app.get("/__slow-load", async (c) => {
      const result = await c.var.services.cache.getOrLoad(
        "slow-load",
        () => new Promise((resolve) => setTimeout(() => resolve(1), 2_000)),
        { loadTimeout: 100 },
      );
      return c.json(result.value);
    });
    const res = await app.request("/__slow-load", {}, { ...env, CACHE_PREFIX: "fail-lt" });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("database_unavailable");
    expectNoInternals(JSON.stringify(body));
  });

  it("answers through the Worker entry point with JSON even for a dead database", async () => {
    const res = await fetchWorker("/products/71", {
      method: "PATCH",
      headers: new Headers({ "content-type": "application/json" }),
      body: JSON.stringify({ priceCents: 1 }),
      bindings: { ...dead, CACHE_PREFIX: "fail-entry" },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toContain("application/json");
    expectNoInternals(await res.text());
  });

  it("refuses an out-of-range deadline setting with config_invalid naming it", async () => {
    const res = await fetchWorker("/health", { bindings: { DB_QUERY_TIMEOUT_MS: "soon" } });
    expect(res.status).toBe(500);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("config_invalid");
    expect(body.error.message).toContain("DB_QUERY_TIMEOUT_MS");
  });
});
