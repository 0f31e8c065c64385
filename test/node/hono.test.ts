import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  cacheControlFor,
  cachedJson,
  cacheJson,
  digest,
  type EdgeCacheVariables,
  edgeCache,
  engineOf,
  etagFor,
  etagOf,
  matchesEtag,
  matchesStrongly,
} from "../../src/hono";
import { type CacheHarness, cacheHarness } from "./cache/harness";

/**
 * The `edgecache/hono` helpers in a Hono app on Node, over the real engine, gateway and Redis.
 * Node has no execution context, so fills run inline and every count is exact right after a
 * response. The same helpers run in workerd in test/node/package.test.ts (from the tarball).
 */
let h: CacheHarness;
let prefix: string;
let rows: Map<string, { id: string; version: number; name: string }>;
let loads: number;

function appWithCache() {
  const app = new Hono<{ Variables: EdgeCacheVariables }>();
  app.use(edgeCache(() => h.cache({}, prefix)));
  app.get("/items/:id", (c) => {
    const key = `item:${c.req.param("id")}`;
    return cacheJson(c, {
      key,
      load: async () => {
        loads++;
        return rows.get(c.req.param("id")) ?? null;
      },
      // versionOf is only asked about values that get cached, never about null.
      options: { versionKey: key, versionOf: (row) => row?.version ?? 0, earlyRefresh: false },
    });
  });
  app.get("/row/:id", (c) => {
    const key = `item:${c.req.param("id")}`;
    return cacheJson(c, {
      key,
      load: async () => rows.get(c.req.param("id")) ?? null,
      options: { versionKey: key, versionOf: (row) => row?.version ?? 0, earlyRefresh: false },
      validator: "version", // the row is the whole body
      audience: "private",
    });
  });
  app.get("/plain/:id", (c) =>
    cacheJson(c, {
      key: `plain:${c.req.param("id")}`,
      load: async () => {
        loads++;
        return rows.get(c.req.param("id")) ?? null;
      },
      options: { earlyRefresh: false },
      notFound: () => c.json({ error: { code: "gone", message: "custom" } }, 410),
    }),
  );
  app.post("/purge/:id", async (c) =>
    c.json({ removed: await engineOf(c).invalidate(`plain:${c.req.param("id")}`) }),
  );
  return app;
}

beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});
beforeEach(async () => {
  prefix = `hono${randomBytes(4).toString("hex")}`;
  rows = new Map([["1", { id: "1", version: 3, name: "one" }]]);
  loads = 0;
  // Load every script this file uses into Redis's cache, then count from zero.
  const warm = h.cache({}, prefix);
  await warm.getOrLoad("warm", async () => 1);
  await warm.invalidate("warm");
  await warm.bumpVersion("warm", 1, 1);
  await h.resetCounter();
});

describe("ETag helpers", () => {
  it("build validators and match If-None-Match weakly, lists and *", async () => {
    expect(etagOf(7)).toBe('"v7"');
    const d = await digest('{"id":1}');
    expect(d).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(await digest('{"id":1}')).toBe(d);
    expect(await digest('{"id":2}')).not.toBe(d);
    expect(await etagFor("content", 7, '{"id":1}')).toBe(`"c.${d}"`);
    expect(await etagFor("version+content", 7, '{"id":1}')).toBe(`"v7.${d}"`);
    expect(await etagFor("version", 7, '{"id":1}')).toBe('"v7"');
    expect(await etagFor("version", null, '{"id":1}')).toBeNull();
    expect(cacheControlFor("shared")).toBe("no-cache");
    expect(cacheControlFor("private")).toBe("private, no-cache");
    expect(matchesEtag('"v7"', '"v7"')).toBe(true);
    expect(matchesEtag('W/"v7"', '"v7"')).toBe(true);
    expect(matchesEtag('"v6", W/"v7"', '"v7"')).toBe(true);
    expect(matchesEtag(" * ", '"v7"')).toBe(true);
    expect(matchesEtag('"v70"', '"v7"')).toBe(false);
    expect(matchesEtag("", '"v7"')).toBe(false);
    expect(matchesEtag(undefined, '"v7"')).toBe(false);
    expect(matchesEtag('"v7"', null)).toBe(false);
    // If-Match compares strongly: a weak tag never matches; `*` matches any representation.
    expect(matchesStrongly('"v6", "v7"', '"v7"')).toBe(true);
    expect(matchesStrongly(" * ", '"v7"')).toBe(true);
    expect(matchesStrongly('W/"v7"', '"v7"')).toBe(false);
    expect(matchesStrongly('"v7"', 'W/"v7"')).toBe(false);
    expect(matchesStrongly('"v70"', '"v7"')).toBe(false);
    expect(matchesStrongly('"v7"', null)).toBe(false);
  });
});

describe("cacheJson", () => {
  it("versioned entity: MISS, HIT, 304 for GET and HEAD, ETag v<version>.<digest>; 1 request per read", async () => {
    const app = appWithCache();
    const miss = await app.request("/items/1");
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    const etag = `"v3.${await digest(JSON.stringify(rows.get("1")))}"`;
    expect(miss.headers.get("etag")).toBe(etag);
    expect(miss.headers.get("content-type")).toBe("application/json");
    expect(miss.headers.get("cache-control")).toBe("no-cache");
    expect(await miss.json()).toEqual({ id: "1", version: 3, name: "one" });
    expect(await h.requests()).toBe(2); // read + fill (inline: no waitUntil on Node)

    const hit = await app.request("/items/1");
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("age")).toMatch(/^\d+$/);
    expect(hit.headers.get("etag")).toBe(etag);
    expect(await h.requests()).toBe(3);

    const notModified = await app.request("/items/1", {
      headers: { "if-none-match": `"other", W/${etag}` },
    });
    expect(notModified.status).toBe(304);
    expect(notModified.body).toBeNull();
    expect(notModified.headers.get("etag")).toBe(etag);
    expect(notModified.headers.get("x-cache")).toBe("HIT");
    expect(notModified.headers.get("cache-control")).toBe("no-cache");
    const head = await app.request("/items/1", {
      method: "HEAD",
      headers: { "if-none-match": etag },
    });
    expect(head.status).toBe(304);
    expect(await h.requests()).toBe(5);
    expect(loads).toBe(1);

    // A newer version: the old ETag no longer matches, and the new one comes back.
    rows.set("1", { id: "1", version: 4, name: "uno" });
    await h.cache({}, prefix).bumpVersion("item", 1, 4);
    const changed = await app.request("/items/1", { headers: { "if-none-match": etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get("x-cache")).toBe("MISS");
    expect(changed.headers.get("etag")).toMatch(/^"v4\.[A-Za-z0-9_-]{16}"$/);
    expect(await changed.json()).toMatchObject({ name: "uno" });

    // If-Match on a read (RFC 9110 §13.1.1): 200 while it names the current representation,
    // 412 with the error shape and the current ETag once it does not; checked before
    // If-None-Match.
    const current = changed.headers.get("etag") ?? "";
    const matched = await app.request("/items/1", { headers: { "if-match": current } });
    expect(matched.status).toBe(200);
    expect(await matched.json()).toMatchObject({ name: "uno" });
    for (const method of ["GET", "HEAD"]) {
      const failed = await app.request("/items/1", {
        method,
        headers: { "if-match": etag, "if-none-match": current },
      });
      expect(failed.status, method).toBe(412);
      expect(failed.headers.get("etag")).toBe(current);
      expect(failed.headers.get("cache-control")).toBe("no-store");
      if (method === "GET") {
        expect(await failed.json()).toMatchObject({ error: { code: "precondition_failed" } });
      }
    }
    expect((await app.request("/items/1", { headers: { "if-match": "*" } })).status).toBe(200);
  });

  it("validator and audience: a row that is its whole body, personal data", async () => {
    const app = appWithCache();
    const res = await app.request("/row/1");
    expect(res.headers.get("etag")).toBe('"v3"');
    expect(res.headers.get("cache-control")).toBe("private, no-cache");
    expect((await app.request("/row/1", { headers: { "if-none-match": '"v3"' } })).status).toBe(
      304,
    );
    // A POST never answers 304, whatever its If-None-Match.
    const post = new Hono();
    post.post("/r", async (c) =>
      cachedJson(c, await h.cache({}, prefix).getOrLoad("r", async () => 1), {
        validator: "content",
        cacheControl: "public, max-age=60",
      }),
    );
    const etag = `"c.${await digest("1")}"`;
    const answered = await post.request("/r", {
      method: "POST",
      headers: { "if-none-match": etag },
    });
    expect(answered.status).toBe(200);
    expect(answered.headers.get("etag")).toBe(etag);
    expect(answered.headers.get("cache-control")).toBe("public, max-age=60");
    // validator "version" on a result without a version: the content's ETag, never none
    // (a library audit found the answer without any validator).
    const unversioned = new Hono();
    unversioned.get("/u", async (c) =>
      cachedJson(c, await h.cache({}, prefix).getOrLoad("u", async () => 2), {
        validator: "version",
      }),
    );
    const plainEtag = `"c.${await digest("2")}"`;
    expect((await unversioned.request("/u")).headers.get("etag")).toBe(plainEtag);
    const revalidated = await unversioned.request("/u", {
      headers: { "if-none-match": plainEtag },
    });
    expect(revalidated.status).toBe(304);
  });

  it("unversioned value: content ETag, 404 by default for a versioned miss (not cached)", async () => {
    const app = appWithCache();
    const first = await app.request("/plain/1");
    const etag = first.headers.get("etag");
    expect(etag).toBe(`"c.${await digest(JSON.stringify(rows.get("1")))}"`);
    expect(
      (await app.request("/plain/1", { headers: { "if-none-match": etag ?? "" } })).status,
    ).toBe(304);

    // Under a versionKey, null means "not found" and is not cached: each request loads.
    const missing = await app.request("/items/404");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: { code: "not_found", message: "/items/404 was not found" },
    });
    expect(missing.headers.get("x-cache")).toBe("MISS");
    expect(missing.headers.get("cache-control")).toBe("no-store");
    await app.request("/items/404");
    expect(loads).toBe(3);
  });

  it("unversioned null is cached, answered by notFound; invalidate through engineOf", async () => {
    const app = appWithCache();
    const gone = await app.request("/plain/9");
    expect(gone.status).toBe(410);
    expect(gone.headers.get("x-cache")).toBe("MISS");
    // A notFound that builds its Response itself gets X-Cache and Age too.
    const own = new Hono().use(edgeCache(() => h.cache({}, prefix)));
    own.get("/raw/:id", (c) =>
      cacheJson(c, {
        key: `raw:${c.req.param("id")}`,
        load: async () => null,
        notFound: () => new Response("gone", { status: 410 }),
      }),
    );
    const raw = await own.request("/raw/1");
    expect([raw.status, raw.headers.get("x-cache"), raw.headers.get("age")]).toEqual([
      410,
      "MISS",
      "0",
    ]);
    expect(await raw.text()).toBe("gone");
    expect((await app.request("/plain/9")).headers.get("x-cache")).toBe("HIT");
    expect(loads).toBe(1);
    const purged = await app.request("/purge/9", { method: "POST" });
    expect(await purged.json()).toEqual({ removed: 1 });
    expect((await app.request("/plain/9")).headers.get("x-cache")).toBe("MISS");
    expect(loads).toBe(2);
  });

  it("Redis unreachable: the loader's value as BYPASS, with the ETag a HIT would have", async () => {
    const app = appWithCache();
    const etag = (await app.request("/items/1")).headers.get("etag");
    await h.faults({ failRate: 1, failStatus: 503 });
    try {
      const res = await app.request("/items/1");
      expect(res.status).toBe(200);
      expect(res.headers.get("x-cache")).toBe("BYPASS");
      expect(res.headers.get("etag")).toBe(etag);
      expect(loads).toBe(2);
    } finally {
      await h.clearFaults();
    }
  });

  it("a key the cache refuses (it comes from the URL) answers 400 invalid_key, before any request", async () => {
    const app = appWithCache();
    const before = await h.requests();
    for (const path of ["/items/a%20b", `/items/${"x".repeat(600)}`, "/items/a*"]) {
      const res = await app.request(path);
      expect(res.status).toBe(400);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("invalid_key");
      expect(body.error.message).toMatch(/^Invalid cache key/);
    }
    expect(await h.requests()).toBe(before);
    expect(loads).toBe(0);
  });

  it("without the middleware, says how to add it", async () => {
    const app = new Hono();
    app.get("/x", (c) => cacheJson(c, { key: "x", load: async () => 1 }));
    app.onError((err, c) => c.json({ message: err.message }, 500));
    const res = await app.request("/x");
    expect(((await res.json()) as { message: string }).message).toMatch(/app\.use\(edgeCache\(/);
  });

  it("cachedJson answers a result from any getOrLoad", async () => {
    const app = new Hono();
    const cache = h.cache({}, prefix);
    app.get("/r", async (c) => cachedJson(c, await cache.getOrLoad("r", async () => [1, 2, 3])));
    const res = await app.request("/r");
    expect(res.headers.get("x-cache")).toBe("MISS");
    expect(await res.json()).toEqual([1, 2, 3]);
  });
});
