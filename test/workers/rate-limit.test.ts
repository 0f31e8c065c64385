import { env } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { products } from "../../db/schema";
import { ConfigError, type Env, loadConfig } from "../../src/config/env";
import { parseRateLimit } from "../../src/config/rate-limit";
import { clientIdentity, LOCAL_CLIENT } from "../../src/http/client-id";
import { api, type ErrorBody } from "./api";
import { withDb } from "./db";
import { clearPrefix, gatewayControl, scanKeys, stack, testRedis } from "./stack";

const prefix = "t_ratelimit";
// Its own gateway token: counts and faults here cannot touch (or be touched by) other files.
const token = stack.spareGatewayTokens.ratelimit;

// Every test takes fresh client addresses: budgets (and the isolate's memory of refused
// clients) never carry over from one test to the next.
let nextHost = 0;
const freshIp = () => {
  nextHost++;
  return `198.51.${100 + Math.floor(nextHost / 250)}.${nextHost % 250}`;
};

interface Limits {
  writes?: string;
  sessions?: string;
  timeoutMs?: string;
  gatewayToken?: string;
}

const bindings = (limits: Limits) => ({
  RATE_LIMIT_WRITES: limits.writes ?? "off",
  RATE_LIMIT_SESSIONS: limits.sessions ?? "off",
  RATE_LIMIT_TIMEOUT_MS: limits.timeoutMs ?? "2000",
  UPSTASH_REDIS_REST_TOKEN: limits.gatewayToken ?? stack.gatewayToken,
});

/**
 * A real write that changes nothing: PATCH of a product that does not exist runs the whole
 * write path (rate limit, validation, Postgres transaction) and answers 404.
 */
const write = (ip: string | undefined, limits: Limits) =>
  api<ErrorBody>("PATCH", "/products/2000000000", {
    prefix,
    body: { name: "rate-limited" },
    headers: ip === undefined ? {} : { "cf-connecting-ip": ip },
    env: bindings(limits),
  });

const createSession = (ip: string, limits: Limits) =>
  api<{ token: string } & ErrorBody>("POST", "/sessions", {
    prefix,
    body: { userId: 1, ttlSeconds: 60 },
    headers: { "cf-connecting-ip": ip },
    env: bindings(limits),
  });

/** Windows are aligned to multiples of their length: keep a test's burst inside one. */
async function awayFromWindowEnd(windowSeconds: number, marginMs = 3000): Promise<void> {
  const windowMs = windowSeconds * 1000;
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginMs) await new Promise((r) => setTimeout(r, left + 50));
}

const requests = async () => Number((await gatewayControl("stats", { token })).requests);
const byCommand = async () =>
  (await gatewayControl("stats", { token })).byCommand as Record<string, number>;

beforeAll(async () => {
  await clearPrefix(prefix);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await gatewayControl("reset", { token });
});

describe("rate limits on writes", () => {
  it("answers the write after the budget with 429, Retry-After and the error shape", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const limits = { writes: "3/1h" };
    for (const remaining of [2, 1, 0]) {
      const res = await write(ip, limits);
      // Allowed: the route ran (404 from Postgres) and says what is left.
      expect(res.status).toBe(404);
      expect(res.headers.get("ratelimit-limit")).toBe("3");
      expect(res.headers.get("ratelimit-remaining")).toBe(String(remaining));
      expect(res.headers.get("ratelimit-policy")).toBe("3;w=3600");
      const reset = Number(res.headers.get("ratelimit-reset"));
      expect(reset).toBeGreaterThanOrEqual(1);
      expect(reset).toBeLessThanOrEqual(3600);
      expect(res.headers.get("retry-after")).toBeNull();
    }

    const before = Date.now();
    const refused = await write(ip, limits);
    const after = Date.now();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toContain("application/json");
    const windowEnd = (Math.floor(before / 3_600_000) + 1) * 3_600_000;
    expect(refused.body).toEqual({
      error: {
        code: "rate_limited",
        message: expect.stringContaining("3 per 3600s"),
        details: { limit: 3, remaining: 0, reset: windowEnd },
      },
    });
    // Retry-After is the limiter's reset in whole seconds, rounded up.
    const retryAfter = Number(refused.headers.get("retry-after"));
    // (The Worker reads its clock between before and after: a second may tick over meanwhile.)
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil((windowEnd - before) / 1000));
    expect(retryAfter).toBeGreaterThanOrEqual(Math.ceil((windowEnd - after) / 1000));
    expect(refused.headers.get("ratelimit-reset")).toBe(String(retryAfter));
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    expect(refused.body.error.message).toContain(`Retry after ${retryAfter}s`);

    // The counter is a TTL'd key under the app's CACHE_PREFIX, gone when the window ends.
    const key = `${prefix}:rl:writes:${ip}:${Math.floor(before / 3_600_000)}`;
    expect(Number(await testRedis().get(key))).toBeGreaterThanOrEqual(4);
    const pttl = await testRedis().pttl(key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(3_600_000);
  });

  it("refuses before the route runs: a refused write changes nothing", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const created = await api<{ id: number; version: number }>("POST", "/products", {
      prefix,
      body: { sku: `rl-${Date.now()}`, name: "before", categoryId: 1, priceCents: 100 },
      env: bindings({ writes: "off" }),
    });
    expect(created.status).toBe(201);
    const { id } = created.body;
    const patch = (name: string) =>
      api<{ name: string; version: number } & ErrorBody>("PATCH", `/products/${id}`, {
        prefix,
        body: { name },
        headers: { "cf-connecting-ip": ip },
        env: bindings({ writes: "1/1h" }),
      });
    const first = await patch("first");
    expect(first.status).toBe(200);
    expect((await patch("second")).status).toBe(429);
    // Postgres has the first change only: the refused handler never ran.
    const rows = await withDb((db) =>
      db
        .select({ name: products.name, version: products.version })
        .from(products)
        .where(eq(products.id, id)),
    );
    expect(rows).toEqual([{ name: "first", version: first.body.version }]);
  });

  it("gives each client its own budget; an IPv6 /64 is one client", async () => {
    await awayFromWindowEnd(3600);
    const limits = { writes: "2/1h" };
    const a = freshIp();
    const b = freshIp();
    expect((await write(a, limits)).status).toBe(404);
    expect((await write(a, limits)).status).toBe(404);
    expect((await write(a, limits)).status).toBe(429);
    // b has spent nothing: its first two go through, its third does not.
    const first = await write(b, limits);
    expect(first.status).toBe(404);
    expect(first.headers.get("ratelimit-remaining")).toBe("1");
    expect((await write(b, limits)).status).toBe(404);
    expect((await write(b, limits)).status).toBe(429);
    // a is still refused.
    expect((await write(a, limits)).status).toBe(429);

    const net = `2001:db8:${nextHost.toString(16)}:1`;
    freshIp();
    expect((await write(`${net}::1`, limits)).status).toBe(404);
    expect((await write(`${net}:0:ffff:abcd:2`, limits)).status).toBe(404);
    // Another address of the same /64 shares the budget...
    expect((await write(`${net}:ffff:ffff:ffff:ffff`, limits)).status).toBe(429);
    // ...another /64 does not.
    expect((await write(`${net.replace(/:1$/, ":2")}::1`, limits)).status).toBe(404);
  });

  it("counts requests without CF-Connecting-IP (or with garbage in it) as one local client", async () => {
    await awayFromWindowEnd(3600);
    // The "local" budget is shared by the whole file, so a prefix of its own for this test.
    const own = "t_rl_local";
    await clearPrefix(own);
    const call = (headers: Record<string, string>) =>
      api<ErrorBody>("PATCH", "/products/2000000000", {
        prefix: own,
        body: { name: "x" },
        headers,
        env: bindings({ writes: "2/1h" }),
      });
    expect((await call({})).status).toBe(404);
    expect((await call({ "cf-connecting-ip": "not-an-address" })).status).toBe(404);
    const third = await call({ "x-forwarded-for": freshIp() });
    // X-Forwarded-For is the client's to write, so it is never a fresh budget.
    expect(third.status).toBe(429);
    const hour = Math.floor(Date.now() / 3_600_000);
    expect(await testRedis().exists(`${own}:rl:writes:${LOCAL_CLIENT}:${hour}`)).toBe(1);
  });

  it("does not limit reads, and writes and sessions have separate budgets", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const limits = { writes: "1/1h", sessions: "5/1h" };
    expect((await write(ip, limits)).status).toBe(404);
    expect((await write(ip, limits)).status).toBe(429);
    for (const path of ["/products/1", "/products?limit=5", "/categories", "/users/1"]) {
      for (let i = 0; i < 3; i++) {
        const res = await api("GET", path, {
          prefix,
          headers: { "cf-connecting-ip": ip },
          env: bindings(limits),
        });
        expect(res.status, path).toBe(200);
        expect(res.headers.get("ratelimit-limit"), path).toBeNull();
      }
    }
    const session = await createSession(ip, limits);
    expect(session.status).toBe(201);
    expect(session.headers.get("ratelimit-limit")).toBe("5");
    expect(session.headers.get("ratelimit-remaining")).toBe("4");
    // Reading and ending a session are not limited either.
    const read = await api("GET", `/sessions/${session.body.token}`, {
      prefix,
      headers: { "cf-connecting-ip": ip },
      env: bindings({ writes: "1/1h", sessions: "1/1h" }),
    });
    expect(read.status).toBe(200);
    expect(read.headers.get("ratelimit-limit")).toBeNull();
  });

  it("limits every write route, and none when the var is off", async () => {
    await awayFromWindowEnd(3600);
    const routes: [string, string, unknown][] = [
      ["POST", "/products", {}],
      ["PATCH", "/products/2000000000", { name: "x" }],
      ["DELETE", "/products/2000000000", undefined],
      ["POST", "/products/2000000000/reserve", { quantity: 1 }],
      ["PATCH", "/categories/2000000000", { name: "x" }],
      ["PATCH", "/users/2000000000", { name: "x" }],
    ];
    for (const [method, path, body] of routes) {
      const ip = freshIp();
      const call = (writes: string) =>
        api(method, path, {
          prefix,
          body,
          headers: { "cf-connecting-ip": ip },
          env: bindings({ writes }),
        });
      const first = await call("1/1h");
      expect(first.status, `${method} ${path}`).not.toBe(429);
      expect(first.headers.get("ratelimit-remaining"), `${method} ${path}`).toBe("0");
      expect((await call("1/1h")).status, `${method} ${path}`).toBe(429);
      const off = await call("off");
      expect(off.status, `${method} ${path} off`).not.toBe(429);
      expect(off.headers.get("ratelimit-limit")).toBeNull();
    }
  });
});

async function sessionKeys(): Promise<number> {
  let n = 0;
  for await (const keys of scanKeys(testRedis(), `${prefix}:s:*`, 500)) n += keys.length;
  return n;
}

describe("rate limits on session creation", () => {
  it("refuses the session after the budget and creates nothing for it", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const limits = { sessions: "2/1h" };
    expect((await createSession(ip, limits)).status).toBe(201);
    expect((await createSession(ip, limits)).status).toBe(201);
    const before = await sessionKeys();
    const refused = await createSession(ip, limits);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe("rate_limited");
    expect(refused.body.error.message).toContain("session creations");
    expect(refused.body.error.details).toMatchObject({ limit: 2, remaining: 0 });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.body).not.toHaveProperty("token");
    // Only this file writes sessions under its prefix: the refusal stored none.
    expect(await sessionKeys()).toBe(before);
  });
});

describe("what a check costs (gateway request counter)", () => {
  it("costs exactly one Redis request (one EVALSHA) per allowed check", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const on = { writes: "100/1h", gatewayToken: token };
    const off = { writes: "off", gatewayToken: token };
    // Warm-up: makes sure Redis has the script cached (a cold cache costs NOSCRIPT -> EVAL once).
    await write(ip, on);
    const n = 5;

    await gatewayControl("reset", { token });
    for (let i = 0; i < n; i++) expect((await write(ip, off)).status).toBe(404);
    const withoutLimit = await requests();

    await gatewayControl("reset", { token });
    for (let i = 0; i < n; i++) expect((await write(ip, on)).status).toBe(404);
    const withLimit = await requests();
    const commands = await byCommand();

    expect(withLimit - withoutLimit).toBe(n);
    expect(commands.EVALSHA).toBe(n);
    expect(commands.EVAL ?? 0).toBe(0);
  });

  it("costs one request for the first refusal and none for the next ones in the isolate", async () => {
    await awayFromWindowEnd(3600);
    const ip = freshIp();
    const limits = { writes: "2/1h", gatewayToken: token };
    await write(ip, limits);
    await write(ip, limits);
    await gatewayControl("reset", { token });
    expect((await write(ip, limits)).status).toBe(429);
    expect(await requests()).toBe(1);
    for (let i = 0; i < 10; i++) {
      const res = await write(ip, limits);
      expect(res.status).toBe(429);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    }
    // Refused from the isolate's memory of the refusal: no Redis, no Postgres.
    expect(await requests()).toBe(1);
  });
});

describe("fail open", () => {
  const session = (ip: string, limits: Limits) => createSession(ip, limits);

  it("lets the request through (logged, no RateLimit headers) when Redis answers 503", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    await gatewayControl("faults", {
      token,
      body: { failCount: 1, failMode: "status", failStatus: 503 },
    });
    const ip = freshIp();
    const res = await session(ip, { sessions: "1/1h", gatewayToken: token });
    // The one failed request was the check; the session itself was stored.
    expect(res.status).toBe(201);
    expect(res.headers.get("ratelimit-limit")).toBeNull();
    expect(warn).toHaveBeenCalledWith(
      expect.stringContaining("letting the request through unchecked"),
    );
    // One line, without the client's address or the command that carried it.
    const line = String(warn.mock.calls.at(-1)?.[0]);
    expect(line).not.toContain(ip);
    expect(line).not.toContain("command was");
  });

  it("lets the request through when the connection drops (after the client's one retry)", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    await gatewayControl("faults", { token, body: { failCount: 2, failMode: "drop" } });
    const res = await session(freshIp(), { sessions: "1/1h", gatewayToken: token });
    expect(res.status).toBe(201);
    expect(res.headers.get("ratelimit-limit")).toBeNull();
    expect(warn).toHaveBeenCalled();
  });

  it("does not wait for a slow Redis past RATE_LIMIT_TIMEOUT_MS", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    // Every request to Redis takes 3 s; the write that follows the check needs no Redis
    // (404), so the answer comes as soon as the check gives up.
    await gatewayControl("faults", { token, body: { latencyMs: 3000 } });
    const started = Date.now();
    const res = await write(freshIp(), {
      writes: "1/1h",
      timeoutMs: "150",
      gatewayToken: token,
    });
    const elapsed = Date.now() - started;
    expect(res.status).toBe(404);
    expect(res.headers.get("ratelimit-limit")).toBeNull();
    expect(elapsed).toBeLessThan(2500);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining("within 150 ms"));
  });
});

describe("configuration", () => {
  const base = env as unknown as Env;
  const problems = (overrides: Partial<Env>): string[] => {
    try {
      loadConfig({ ...base, ...overrides });
      return [];
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems;
    }
  };

  it("parses requests per window, in s, m or h, and off", () => {
    expect(parseRateLimit("60/60s")).toEqual({ limit: 60, windowSeconds: 60 });
    expect(parseRateLimit("10/1m")).toEqual({ limit: 10, windowSeconds: 60 });
    expect(parseRateLimit("1000 / 1h")).toEqual({ limit: 1000, windowSeconds: 3600 });
    expect(parseRateLimit("OFF")).toBeNull();
    expect(parseRateLimit("60")).toMatch(/must look like "60\/60s"/);
    expect(parseRateLimit("60/60")).toMatch(/must look like/);
    expect(parseRateLimit("60/500ms")).toMatch(/must look like/);
    expect(parseRateLimit("0/60s")).toMatch(/1 to 1000000 requests/);
    expect(parseRateLimit("5/0s")).toMatch(/window from 1s to 24h/);
    expect(parseRateLimit("5/25h")).toMatch(/window from 1s to 24h/);
  });

  it("defaults to 60/60s for writes, 10/60s for sessions and a 500 ms timeout", () => {
    const config = loadConfig({
      ...base,
      RATE_LIMIT_WRITES: undefined,
      RATE_LIMIT_SESSIONS: undefined,
      RATE_LIMIT_TIMEOUT_MS: undefined,
    });
    expect(config.RATE_LIMIT_WRITES).toEqual({ limit: 60, windowSeconds: 60 });
    expect(config.RATE_LIMIT_SESSIONS).toEqual({ limit: 10, windowSeconds: 60 });
    expect(config.RATE_LIMIT_TIMEOUT_MS).toBe(500);
  });

  it("names the variable and what is wrong with it", () => {
    expect(problems({ RATE_LIMIT_WRITES: "sixty" })).toEqual([
      'RATE_LIMIT_WRITES must look like "60/60s" (requests per window, window in s, m or h) or be "off"',
    ]);
    expect(problems({ RATE_LIMIT_SESSIONS: "0/1m" })[0]).toMatch(
      /^RATE_LIMIT_SESSIONS must allow 1 to 1000000/,
    );
    expect(problems({ RATE_LIMIT_WRITES: "" })[0]).toMatch(
      /^missing RATE_LIMIT_WRITES \(requests per client per window/,
    );
    // The same parser as every other duration (REDIS_TIMEOUT_MS, …): one message shape.
    const range = "must be an integer number of milliseconds from 10 to 10000 (default 500)";
    expect(problems({ RATE_LIMIT_TIMEOUT_MS: "fast" })).toEqual([`RATE_LIMIT_TIMEOUT_MS ${range}`]);
    expect(problems({ RATE_LIMIT_TIMEOUT_MS: "5" })).toEqual([`RATE_LIMIT_TIMEOUT_MS ${range}`]);
  });

  it("answers a request under a bad limit with 500 config_invalid naming the variable", async () => {
    const res = await api<ErrorBody>("GET", "/products/1", {
      prefix,
      env: { RATE_LIMIT_WRITES: "60 per minute" },
    });
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe("config_invalid");
    expect(res.body.error.message).toContain("RATE_LIMIT_WRITES must look like");
  });
});

describe("client identity", () => {
  it("uses the address, the /64 for IPv6, and one local identity otherwise", () => {
    expect(clientIdentity("203.0.113.7")).toBe("203.0.113.7");
    expect(clientIdentity(" 203.0.113.7 ")).toBe("203.0.113.7");
    expect(clientIdentity("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(clientIdentity("2001:DB8:0001:0002::9")).toBe("2001:db8:1:2::/64");
    expect(clientIdentity("2001:db8::")).toBe("2001:db8:0:0::/64");
    expect(clientIdentity("::1")).toBe("0:0:0:0::/64");
    expect(clientIdentity("::ffff:198.51.100.1")).toBe("198.51.100.1");
    for (const bad of [undefined, null, "", "256.1.1.1", "1.2.3", "local", "1:2:3", "::1::2"]) {
      expect(clientIdentity(bad)).toBe(LOCAL_CLIENT);
    }
    expect(clientIdentity("1:2:3:4:5:6:7:8:9")).toBe(LOCAL_CLIENT);
    expect(clientIdentity("x".repeat(65))).toBe(LOCAL_CLIENT);
  });
});

describe("OpenAPI document", () => {
  it("documents 429 and the RateLimit headers on the limited routes only", async () => {
    const res = await api<{
      paths: Record<
        string,
        Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>
      >;
    }>("GET", "/openapi.json", { prefix });
    expect(res.status).toBe(200);
    const { paths } = res.body;
    const limited = [
      ["/products", "post", "201"],
      ["/products/{id}", "patch", "200"],
      ["/products/{id}", "delete", "204"],
      ["/products/{id}/reserve", "post", "200"],
      ["/categories/{id}", "patch", "200"],
      ["/users/{id}", "patch", "200"],
      ["/sessions", "post", "201"],
    ] as const;
    for (const [path, method, ok] of limited) {
      const responses = paths[path]?.[method]?.responses;
      expect(responses?.["429"]?.headers, `${method} ${path}`).toHaveProperty("Retry-After");
      expect(responses?.[ok]?.headers, `${method} ${path}`).toHaveProperty("RateLimit-Remaining");
    }
    for (const [path, method] of [
      ["/products", "get"],
      ["/products/{id}", "get"],
      ["/sessions/{token}", "get"],
      ["/sessions/{token}", "delete"],
    ] as const) {
      expect(paths[path]?.[method]?.responses, `${method} ${path}`).not.toHaveProperty("429");
    }
  });
});
