import { env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { fetchWorker } from "./api";
import { gatewayControl, stack } from "./stack";

interface HealthBody {
  status: string;
  down?: string[];
  redis: { ok: boolean; latencyMs: number; problem?: string };
  postgres: { ok: boolean; latencyMs: number; problem?: string };
}

const callWorker = (path: string, bindings: Record<string, unknown> = {}) =>
  fetchWorker(path, { bindings });

describe("GET /health", () => {
  afterEach(async () => {
    await gatewayControl("reset", { token: stack.spareGatewayTokens.health });
  });

  it("reaches Redis through the gateway and Postgres through the WebSocket proxy", async () => {
    // Its own gateway token, so requests of test files running alongside are not counted.
    const token = stack.spareGatewayTokens.health;
    await gatewayControl("reset", { token });
    const res = await callWorker("/health", { UPSTASH_REDIS_REST_TOKEN: token });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as HealthBody;
    expect(body.status).toBe("ok");
    expect(body.redis.ok).toBe(true);
    expect(body.postgres.ok).toBe(true);
    expect(body.redis.latencyMs).toBeGreaterThanOrEqual(0);
    // The PING really went through the gateway: one Upstash request.
    const stats = await gatewayControl("stats", { token });
    expect(stats.requests).toBe(1);
  });

  it("?postgres=skip checks Redis alone: no Postgres connection, so a frequent uptime probe lets Neon scale to zero", async () => {
    const res = await callWorker("/health?postgres=skip", {
      // A database that does not exist: touched, it would answer 503.
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/edgecache_does_not_exist",
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Omit<HealthBody, "postgres"> & { postgres: unknown };
    expect(body.status).toBe("ok");
    expect(body.redis.ok).toBe(true);
    expect(body.postgres).toEqual({ skipped: true });

    const wrong = await callWorker("/health?postgres=no");
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({
      error: { code: "validation_failed", details: { issues: [{ path: "postgres" }] } },
    });
  });

  it("answers through the Worker's fetch entry point (SELF)", async () => {
    const res = await SELF.fetch("http://edgecache.test/health");
    expect(res.status).toBe(200);
    expect(((await res.json()) as HealthBody).status).toBe("ok");
  });

  it("reports Redis as down (503, degraded) when the gateway fails every request", async () => {
    const token = stack.spareGatewayTokens.health;
    await gatewayControl("faults", {
      token,
      body: { failRate: 1, failMode: "status", failStatus: 503 },
    });
    const res = await callWorker("/health", { UPSTASH_REDIS_REST_TOKEN: token });
    expect(res.status).toBe(503);
    const body = (await res.json()) as HealthBody;
    expect(body.status).toBe("degraded");
    expect(body.redis.ok).toBe(false);
    expect(body.redis.problem).toBe("unreachable");
    expect(body.down).toEqual(["redis"]);
    expect(body.postgres.ok).toBe(true);
  });

  it("reports Postgres as down when the database does not exist", async () => {
    const res = await callWorker("/health", {
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/edgecache_does_not_exist",
    });
    expect(res.status).toBe(503);
    const body = (await res.json()) as HealthBody;
    expect(body.redis.ok).toBe(true);
    expect(body.postgres.ok).toBe(false);
    expect(body.postgres.problem).toBe("unreachable");
    expect(body.down).toEqual(["postgres"]);
    // The driver's text (database name, addresses) stays in the log.
    expect(JSON.stringify(body)).not.toMatch(
      /does not exist|edgecache_does_not_exist|127\.0\.0\.1/,
    );
  });

  it("reports Postgres credentials the server refuses as rejected, without the role's name", async () => {
    // SQLSTATE class 28 (invalid authorization): here a role that does not exist (28000); a
    // wrong password is 28P01. Retrying will not help, so it is not "unreachable".
    const url = new URL(stack.databaseUrl);
    url.username = "edgecache_no_such_role";
    const res = await callWorker("/health", { DATABASE_URL: url.toString() });
    expect(res.status).toBe(503);
    const body = (await res.json()) as HealthBody;
    expect(body.down).toEqual(["postgres"]);
    expect(body.postgres.problem).toBe("rejected");
    expect(JSON.stringify(body)).not.toMatch(/edgecache_no_such_role|127\.0\.0\.1/);
  });

  it("rejects a wrong Upstash token as a Redis failure, not a crash", async () => {
    const res = await callWorker("/health", { UPSTASH_REDIS_REST_TOKEN: "wrong-token" });
    expect(res.status).toBe(503);
    const body = (await res.json()) as HealthBody;
    expect(body.redis.ok).toBe(false);
    expect(body.redis.problem).toBe("rejected");
    expect(JSON.stringify(body)).not.toContain(stack.gatewayUrl);
  });
});

describe("errors", () => {
  it("answers unknown routes with the JSON error shape", async () => {
    const res = await SELF.fetch("http://edgecache.test/no/such/route");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { code: "not_found", message: "No route for GET /no/such/route" },
    });
  });

  it("names the missing variable when the configuration is incomplete", async () => {
    const res = await callWorker("/health", { DATABASE_URL: undefined, ADMIN_TOKEN: "" });
    expect(res.status).toBe(500);
    const body = (await res.json()) as {
      error: { code: string; message: string; details: { problems: string[] } };
    };
    expect(body.error.code).toBe("config_invalid");
    expect(body.error.message).toContain("missing DATABASE_URL");
    expect(body.error.message).toContain("copy .dev.vars.example to .dev.vars");
    expect(body.error.message).toContain("restart `npm run dev`");
    expect(body.error.details.problems).toContain(
      "missing ADMIN_TOKEN (a long random string that guards /admin (wrangler secret put ADMIN_TOKEN))",
    );
  });

  it("rejects a malformed setting with the reason", async () => {
    const res = await callWorker("/health", { UPSTASH_REDIS_REST_URL: "not a url" });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toContain("UPSTASH_REDIS_REST_URL");
  });

  it.each([
    ["UPSTASH_REDIS_REST_URL", stack.gatewayUrl.replace("http://", "HTTP://")], // the client refuses it
    ["UPSTASH_REDIS_REST_URL", "https://a"],
    ["DATABASE_URL", "postgres://"],
    ["DATABASE_URL", "postgres://postgres@127.0.0.1:99999/x"],
    ["DATABASE_URL", "postgres://postgres:%zz@127.0.0.1:5432/x"],
  ])(
    "a %s its driver cannot use (%s) is config_invalid, never a 500 of another kind or an outage's 503",
    async (name, value) => {
      for (const path of ["/health", "/products/1"]) {
        const res = await callWorker(path, { [name]: value });
        expect(res.status).toBe(500);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("config_invalid");
        expect(body.error.message).toContain(name);
        expect(body.error.message).not.toContain("%zz"); // the password is never echoed
        // Present but malformed: fix it and restart, not "copy the example".
        expect(body.error.message).toContain("fix it in .dev.vars and restart `npm run dev`");
      }
    },
  );
});

it("binds the test stack, not the dev one", () => {
  expect(stack.databaseUrl).not.toMatch(/\/edgecache$/);
  expect(env.DATABASE_URL).toBe(stack.databaseUrl);
});

describe("API documentation", () => {
  it("serves an OpenAPI 3.1 document listing every route, and Swagger UI", async () => {
    const doc = await SELF.fetch("http://edgecache.test/openapi.json");
    expect(doc.status).toBe(200);
    const body = (await doc.json()) as { openapi: string; paths: Record<string, object> };
    expect(body.openapi).toBe("3.1.0");
    expect(Object.keys(body.paths).sort()).toEqual(
      [
        "/admin/entries/{key}",
        "/admin/invalidate",
        "/admin/outbox",
        "/admin/outbox/{id}",
        "/admin/outbox/{id}/retry",
        "/admin/stats",
        "/admin/warm",
        "/categories",
        "/categories/{id}",
        "/products",
        "/products/{id}",
        "/products/{id}/reserve",
        "/sessions",
        "/sessions/{token}",
        "/users/{id}",
      ].sort(),
    );
    const ui = await SELF.fetch("http://edgecache.test/docs");
    expect(ui.status).toBe(200);
    // Every file from this Worker, under a CSP that allows no other origin: Swagger UI came
    // from a CDN, unpinned and without integrity, on the origin of the admin dashboard.
    const page = await ui.text();
    expect(page).not.toMatch(/https?:\/\//);
    expect(ui.headers.get("content-security-policy")).toContain("script-src 'self';");
    const sources = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(sources.sort()).toEqual(
      ["/docs/init.js", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"].sort(),
    );
    for (const path of sources) {
      const file = await SELF.fetch(`http://edgecache.test${path}`);
      expect(file.status, path).toBe(200);
      expect((await file.text()).length, path).toBeGreaterThan(40);
    }
    expect(await (await SELF.fetch("http://edgecache.test/docs/init.js")).text()).toContain(
      "/openapi.json",
    );
    expect((await SELF.fetch("http://edgecache.test/docs/nope.js")).status).toBe(404);
  });

  it("gives every pattern as a regular expression a client can compile, matched by its own examples", async () => {
    // Found by a first-time-user audit: the cache-name patterns came out as `^…$/u` (the flags
    // appended), which no validator can match, not even the schema's own `product:42`.
    const doc = (await (await SELF.fetch("http://edgecache.test/openapi.json")).json()) as object;
    const found: { pattern: string; examples: string[] }[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) {
        for (const item of node) walk(item);
        return;
      }
      if (node === null || typeof node !== "object") return;
      const o = node as Record<string, unknown>;
      const schema = (o.schema ?? o) as Record<string, unknown>;
      if (typeof schema.pattern === "string") {
        const examples = [o.example, schema.example].filter(
          (e): e is string => typeof e === "string",
        );
        found.push({ pattern: schema.pattern, examples });
      }
      for (const value of Object.values(o)) walk(value);
    };
    walk(doc);
    expect(found.length).toBeGreaterThanOrEqual(5);
    for (const { pattern, examples } of found) {
      // JSON Schema patterns are ECMA-262; \p{…} needs Unicode mode, as validators such as ajv use.
      const re = new RegExp(pattern, "u");
      expect(pattern, pattern).not.toMatch(/\/[a-z]+$/);
      for (const example of examples)
        expect(re.test(example), `${example} ~ ${pattern}`).toBe(true);
    }
    expect(found.some((f) => f.examples.includes("product:42"))).toBe(true);
  });

  it("lists the statuses the middleware answers on each operation, not only the handler's", async () => {
    // Found by an API audit: GET /categories listed 200 alone, writes no 413/415/503.
    type Op = {
      responses: Record<string, { description: string; headers?: Record<string, unknown> }>;
      parameters?: { name: string; in: string }[];
    };
    const doc = (await (await SELF.fetch("http://edgecache.test/openapi.json")).json()) as {
      paths: Record<string, Record<string, Op>>;
    };
    const codes = (path: string, method: string) =>
      Object.keys(doc.paths[path]?.[method]?.responses ?? {}).sort();
    expect(codes("/categories", "get")).toEqual(["200", "304", "412", "500", "503"]);
    expect(codes("/products", "get")).toEqual(
      expect.arrayContaining(["200", "304", "400", "412", "500", "503"]),
    );
    for (const [path, method] of [
      ["/products", "post"],
      ["/products/{id}", "patch"],
      ["/users/{id}", "patch"],
      ["/sessions", "post"],
    ] as const) {
      expect(codes(path, method), `${method} ${path}`).toEqual(
        expect.arrayContaining(["413", "415", "429", "500", "503"]),
      );
    }
    const unavailable = doc.paths["/products/{id}"]?.get?.responses["503"];
    expect(unavailable?.description).toContain("database_unavailable");
    expect(unavailable?.headers?.["Retry-After"]).toBeDefined();
    expect(doc.paths["/sessions"]?.post?.responses["503"]?.description).toContain(
      "redis_unavailable",
    );
    // The dashboard's data reports what it could not read instead of failing.
    expect(codes("/admin/stats", "get")).not.toContain("503");
    // PATCH /users honours If-None-Match (412 on `*`): the contract says so.
    const headers = doc.paths["/users/{id}"]?.patch?.parameters?.filter((p) => p.in === "header");
    expect(headers?.map((p) => p.name).sort()).toEqual(["if-match", "if-none-match"]);
  });

  it("refuses oversized bodies with 413 in the error shape", async () => {
    const res = await SELF.fetch("http://edgecache.test/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: 1, data: { blob: "x".repeat(70 * 1024) } }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      "payload_too_large",
    );
  });

  it("answers malformed JSON with a field-level 400", async () => {
    const res = await SELF.fetch("http://edgecache.test/users/1", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: { issues: unknown[] } } };
    expect(body.error.code).toBe("validation_failed");
    expect(body.error.details.issues).toHaveLength(1);
  });
});
