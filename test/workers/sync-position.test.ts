import { env } from "cloudflare:test";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { parseConsistency } from "../../src/config/consistency";
import { ConfigError, type Env, loadConfig } from "../../src/config/env";
import type { ProductDetail } from "../../src/domain/products";
import {
  answerSyncToken,
  incomingSyncToken,
  SYNC_COOKIE_MAX_AGE_S,
} from "../../src/http/sync-position";
import { createServices } from "../../src/runtime/services";
import { apiFor, type ErrorBody } from "./api";

/**
 * The sync position (Upstash's `upstash-sync-token`) carried end to end: read from the request
 * (header `X-Sync-Token` or cookie `ec_sync`, header first, malformed values ignored), set on the
 * request's Upstash client before its first call, and answered when the request moved it. The
 * test gateway has no replica, so its token is a counter that moves on every call: what a
 * carried token does on a Global database is proven in test/node/replica-consistency.test.ts.
 */
const prefix = `tsp${Date.now().toString(36)}`;
const api = apiFor(prefix);
const TOKEN = /^[A-Za-z0-9._:-]{1,128}$/;

/** What `incomingSyncToken` makes of a request: a tiny app around the real function. */
async function carried(headers: Record<string, string>): Promise<string> {
  const app = new Hono().get("/", (c) => c.text(incomingSyncToken(c) ?? "(none)"));
  return (await app.request("/", { headers })).text();
}

/** The headers `answerSyncToken` adds for a request that started at `before` and ended at `after`. */
async function answered(before: string | undefined, after: string | undefined, url = "/") {
  const app = new Hono().get("/", (c) => {
    answerSyncToken(c, before, after);
    return c.text("ok");
  });
  const res = await app.request(url);
  return { header: res.headers.get("x-sync-token"), cookies: res.headers.getAll("set-cookie") };
}

describe("reading the position a request carries", () => {
  it("takes the header, else the cookie, else none", async () => {
    expect(await carried({ "x-sync-token": "42" })).toBe("42");
    expect(await carried({ cookie: "a=1; ec_sync=17; b=2" })).toBe("17");
    expect(await carried({ "x-sync-token": "42", cookie: "ec_sync=17" })).toBe("42");
    expect(await carried({})).toBe("(none)");
    expect(await carried({ cookie: "other=1" })).toBe("(none)");
  });

  it("accepts 1-128 characters of A-Z a-z 0-9 . _ : - (tokens are opaque)", async () => {
    expect(await carried({ "x-sync-token": "eu-1:0000af.3_b" })).toBe("eu-1:0000af.3_b");
    expect(await carried({ "x-sync-token": "x".repeat(128) })).toBe("x".repeat(128));
  });

  it("ignores a malformed header (falling back to the cookie) and a malformed cookie", async () => {
    for (const bad of ["x".repeat(129), "1 2", "1;2", "a+b/c=", "a,b", "<script>"]) {
      expect(await carried({ "x-sync-token": bad })).toBe("(none)");
      expect(await carried({ "x-sync-token": bad, cookie: "ec_sync=9" })).toBe("9");
    }
    expect(await carried({ "x-sync-token": "" })).toBe("(none)");
    expect(await carried({ cookie: "ec_sync=" })).toBe("(none)");
    expect(await carried({ cookie: `ec_sync=${"7".repeat(129)}` })).toBe("(none)");
    expect(await carried({ cookie: "ec_sync=%ZZ" })).toBe("(none)");
    expect(await carried({ cookie: 'ec_sync="1 2"' })).toBe("(none)");
  });
});

describe("answering the position a request ended at", () => {
  it("answers a moved position as the header and a short-lived, HttpOnly cookie", async () => {
    const { header, cookies } = await answered("5", "9");
    expect(header).toBe("9");
    expect(cookies).toEqual([
      `ec_sync=9; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SYNC_COOKIE_MAX_AGE_S}`,
    ]);
    expect(SYNC_COOKIE_MAX_AGE_S).toBe(300);
    expect((await answered(undefined, "1")).header).toBe("1");
  });

  it("marks the cookie Secure on https", async () => {
    const { cookies } = await answered(undefined, "3", "https://api.example/");
    expect(cookies[0]).toMatch(/; Secure$/);
  });

  it("answers nothing when the position did not move, no client was made, or it is not a token", async () => {
    for (const [before, after] of [
      ["5", "5"], // unchanged
      [undefined, undefined], // no Redis client
      ["5", undefined],
      [undefined, ""], // a response without the header resets the client's to ""
      ["5", ""],
      [undefined, "not a token"],
    ] as const) {
      const { header, cookies } = await answered(before, after);
      expect(header, `${before} -> ${after}`).toBeNull();
      expect(cookies).toEqual([]);
    }
  });
});

describe("the request's Upstash client", () => {
  it("starts at the carried position before its first call", () => {
    const services = createServices(env as unknown as Env, undefined, { syncToken: "1234" });
    // No Redis client yet: nothing to report.
    expect(services.syncToken).toBeUndefined();
    expect(services.redis.readYourWritesSyncToken).toBe("1234");
    expect(services.syncToken).toBe("1234");
  });

  it("starts at no position when none is carried", () => {
    const services = createServices(env as unknown as Env);
    expect(services.redis.readYourWritesSyncToken).toBe("");
  });
});

describe("through the Worker", () => {
  /** A write of product `id` (its stock, +1), carrying `headers`. */
  async function patch(id: number, headers: Record<string, string> = {}) {
    const before = await api<ProductDetail>("GET", `/products/${id}`);
    return api<ProductDetail>("PATCH", `/products/${id}`, {
      body: { stock: before.body.stock + 1 },
      headers,
    });
  }

  it("answers a write with its new position, header and cookie alike", async () => {
    const res = await patch(1);
    expect(res.status).toBe(200);
    const token = res.headers.get("x-sync-token") ?? "";
    expect(token).toMatch(TOKEN);
    expect(res.headers.getAll("set-cookie")).toContainEqual(
      `ec_sync=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=300`,
    );
  });

  it("answers a write with a later position than the one it carried", async () => {
    const first = await patch(2);
    const carriedToken = first.headers.get("x-sync-token") ?? "";
    const res = await patch(2, { "x-sync-token": carriedToken });
    expect(res.status).toBe(200);
    const after = res.headers.get("x-sync-token") ?? "";
    expect(after).toMatch(TOKEN);
    // The test gateway's positions count up per Redis request: the write's answer is later.
    expect(Number(after)).toBeGreaterThan(Number(carriedToken));
  });

  it("answers no position to a read, though it reached Redis: reads need none, and stay cacheable", async () => {
    const res = await api<ProductDetail>("GET", "/products/1", {
      headers: { "x-sync-token": "1" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-sync-token")).toBeNull();
    expect(res.headers.getAll("set-cookie")).toEqual([]);
  });

  it("serves a request with a malformed position as if it carried none, never an error", async () => {
    const malformed: Record<string, string>[] = [
      { "x-sync-token": "x".repeat(500) },
      { "x-sync-token": "a b" },
      { cookie: "ec_sync=%%%; other=1" },
      { cookie: `ec_sync=${"9".repeat(300)}` },
    ];
    for (const headers of malformed) {
      const read = await api<ProductDetail>("GET", "/products/1", { headers });
      expect(read.status).toBe(200);
      expect(read.body.id).toBe(1);
      const write = await patch(1, headers);
      expect(write.status).toBe(200);
      expect(write.headers.get("x-sync-token")).toMatch(TOKEN);
    }
  });

  it("accepts the position as a cookie (what a browser sends back)", async () => {
    const first = await patch(3);
    const cookie = (first.headers.getAll("set-cookie")[0] ?? "").split(";")[0] ?? "";
    expect(cookie).toMatch(/^ec_sync=/);
    const read = await api<ProductDetail>("GET", "/products/3", { headers: { cookie } });
    expect(read.status).toBe(200);
    const res = await patch(3, { cookie });
    expect(res.status).toBe(200);
    expect(Number(res.headers.get("x-sync-token"))).toBeGreaterThan(
      Number(cookie.slice("ec_sync=".length)),
    );
  });

  it("answers no position from a request that never reached Redis", async () => {
    const res = await api("GET", "/openapi.json", { headers: { "x-sync-token": "12" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-sync-token")).toBeNull();
    expect(res.headers.getAll("set-cookie")).toEqual([]);
  });
});

describe("CACHE_CONSISTENCY", () => {
  const base = env as unknown as Env;
  const problems = (value: string): string[] => {
    try {
      loadConfig({ ...base, CACHE_CONSISTENCY: value });
      return [];
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems;
    }
  };

  it("defaults every entity to strict; names only the entities that differ", () => {
    const strict = { products: "strict", categories: "strict", users: "strict" };
    expect(loadConfig({ ...base, CACHE_CONSISTENCY: undefined }).CACHE_CONSISTENCY).toEqual(strict);
    expect(parseConsistency("")).toEqual(strict);
    expect(parseConsistency("products=replica")).toEqual({ ...strict, products: "replica" });
    expect(parseConsistency(" Users = REPLICA , products=strict,")).toEqual({
      ...strict,
      users: "replica",
    });
  });

  it("names the variable and what is wrong with it", () => {
    expect(problems("products")).toEqual([
      'CACHE_CONSISTENCY must be a comma list of entity=strict|replica, e.g. "products=replica" (got "products")',
    ]);
    expect(problems("product=replica")).toEqual([
      'CACHE_CONSISTENCY names an unknown entity "product" (known: products, categories, users)',
    ]);
    expect(problems("products=eventual")).toEqual([
      'CACHE_CONSISTENCY gives products "eventual"; the modes are strict and replica',
    ]);
    expect(problems("products=replica,products=strict")).toEqual([
      "CACHE_CONSISTENCY names products twice",
    ]);
  });

  it("answers a request under a bad value with 500 config_invalid naming the variable", async () => {
    const res = await api<ErrorBody>("GET", "/products/1", {
      env: { CACHE_CONSISTENCY: "products=fast" },
    });
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe("config_invalid");
    expect(res.body.error.message).toContain("CACHE_CONSISTENCY gives products");
  });
});
