import { eq } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { products } from "../../db/schema";
import {
  type ProductDetail,
  type ProductPage,
  productEntryOptions,
  productWarmable,
} from "../../src/domain/products";
import {
  type ApiResponse,
  apiFor,
  type ErrorBody,
  expectValidation as expectValidationFailed,
  postProduct,
} from "./api";
import { insertCategory, outboxRowFor, withDb } from "./db";
import { gatewayControl, scanKeys, stack, testRedis } from "./stack";

/**
 * /products through the real Worker, gateway and Postgres. A fresh cache prefix per run, so a
 * re-run in watch mode (same database, same Redis) starts from a cold cache too.
 */
const prefix = `tp${Date.now().toString(36)}`;
const run = Date.now().toString(36).toUpperCase();

const api = apiFor(prefix);

async function newCategory(label: string): Promise<number> {
  return insertCategory({
    slug: `tp-${label}-${run}`.toLowerCase(),
    name: `Products test ${label}`,
  });
}

let skuSeq = 0;
async function newProduct(
  categoryId: number,
  extra: Record<string, unknown> = {},
): Promise<ProductDetail> {
  return postProduct(api, {
    sku: `TP-${run}-${++skuSeq}`,
    name: `Test product ${skuSeq}`,
    categoryId,
    priceCents: 1000 + skuSeq,
    ...extra,
  });
}

async function allPages(query: string, limit: number): Promise<number[]> {
  const ids: number[] = [];
  let cursor: number | null = null;
  for (let page = 0; page < 50; page++) {
    const res: ApiResponse<ProductPage> = await api<ProductPage>(
      "GET",
      `/products?${query}&limit=${limit}${cursor === null ? "" : `&cursor=${cursor}`}`,
    );
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeLessThanOrEqual(limit);
    ids.push(...res.body.items.map((p) => p.id));
    cursor = res.body.nextCursor;
    if (cursor === null) return ids;
  }
  throw new Error("pagination did not end");
}

/** The shared check, and this file's one more: the issues are a list. */
function expectValidation(res: ApiResponse<unknown>, path?: string) {
  expectValidationFailed(res, path);
  expect(Array.isArray((res.body as ErrorBody).error.details?.issues)).toBe(true);
}

let catA: number;
let catB: number;

beforeAll(async () => {
  catA = await newCategory("a");
  catB = await newCategory("b");
});

describe("GET /products/:id", () => {
  it("MISS, then HIT with ETag/Age/Cache-Control, 304 on If-None-Match, MISS after a PATCH", async () => {
    const created = await newProduct(catA, { description: "first", stock: 5 });
    expect(created).toMatchObject({
      categoryId: catA,
      category: { id: catA, name: "Products test a" },
      version: 1,
      stock: 5,
      currency: "USD",
    });

    const miss = await api<ProductDetail>("GET", `/products/${created.id}`);
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    // "v<version>.<digest of the body>": the digest covers the embedded category.
    const v1 = miss.headers.get("etag") ?? "";
    expect(v1).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/);
    expect(miss.headers.get("age")).toBe("0");
    // Every client revalidates: a browser never shows data older than a write it saw.
    expect(miss.headers.get("cache-control")).toBe("no-cache");
    expect(miss.body).toEqual(created);

    const hit = await api<ProductDetail>("GET", `/products/${created.id}`);
    expect(hit.status).toBe(200);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("etag")).toBe(v1);
    expect(hit.body).toEqual(created);

    const notModified = await api("GET", `/products/${created.id}`, {
      headers: { "if-none-match": v1 },
    });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("x-cache")).toBe("HIT");
    expect(notModified.headers.get("etag")).toBe(v1);
    expect(notModified.headers.get("cache-control")).toBe("no-cache");
    expect(notModified.body).toBeNull();
    // A weakened copy of the tag (a compressing proxy) still matches; the bare version does not.
    const weak = await api("GET", `/products/${created.id}`, {
      headers: { "if-none-match": `W/${v1}` },
    });
    expect(weak.status).toBe(304);
    const bare = await api("GET", `/products/${created.id}`, {
      headers: { "if-none-match": '"v1"' },
    });
    expect(bare.status).toBe(200);

    const patched = await api<ProductDetail>("PATCH", `/products/${created.id}`, {
      body: { name: "Renamed product", priceCents: 4242, description: null },
    });
    expect(patched.status).toBe(200);
    const v2 = patched.headers.get("etag");
    expect(v2).toMatch(/^"v2\./);
    expect(patched.body).toMatchObject({
      name: "Renamed product",
      priceCents: 4242,
      description: null,
      version: 2,
    });

    // Read after write: the very next read misses and sees the new version and fields.
    const after = await api<ProductDetail>("GET", `/products/${created.id}`);
    expect(after.headers.get("x-cache")).toBe("MISS");
    // The write's ETag is the one the next GET answers with.
    expect(after.headers.get("etag")).toBe(v2);
    expect(after.body).toEqual(patched.body);
    // An old ETag no longer matches.
    const stale = await api("GET", `/products/${created.id}`, {
      headers: { "if-none-match": v1 },
    });
    expect(stale.status).toBe(200);
    expect(stale.headers.get("x-cache")).toBe("HIT");

    // The write's outbox row was applied and marked processed after the response.
    const row = await outboxRowFor(`product:${created.id}`);
    expect(row?.event).toMatchObject({
      origin: "PATCH /products/:id",
      keys: [`product:${created.id}`],
      versions: { [`product:${created.id}`]: 2 },
      tags: ["products"],
    });
    expect(row?.processedAt).toBeInstanceOf(Date);
  });

  it("caches a product this isolate has never seen under its category tag", async () => {
    // Inserted behind the API's back: nothing in this isolate knows its category yet.
    const id = await withDb(async (db) => {
      const [row] = await db
        .insert(products)
        .values({ sku: `TP-${run}-raw`, name: "Raw insert", categoryId: catB, priceCents: 99 })
        .returning({ id: products.id });
      return row?.id ?? 0;
    });
    const miss = await api<ProductDetail>("GET", `/products/${id}`);
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    expect(miss.body.category.id).toBe(catB);
    const hit = await api("GET", `/products/${id}`);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    const tags = await testRedis().hget<Record<string, string>>(`${prefix}:e:product:${id}`, "tg");
    expect(Object.keys(tags ?? {})).toEqual([`category:${catB}`]);
  });

  it("answers 404 for unknown ids and 400 for ids that are not positive integers", async () => {
    const unknown = await api<ErrorBody>("GET", "/products/2000000000");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");
    for (const bad of ["abc", "0", "-3", "1.5", "99999999999", "1e3"]) {
      expectValidation(await api("GET", `/products/${bad}`), "id");
    }
  });
});

describe("PATCH and DELETE with If-Match", () => {
  it("412 with the current ETag on a wrong version, success on the right one", async () => {
    const p = await newProduct(catA);
    const wrong = await api<ErrorBody>("PATCH", `/products/${p.id}`, {
      headers: { "if-match": '"v7"' },
      body: { stock: 3 },
    });
    expect(wrong.status).toBe(412);
    expect(wrong.body.error.code).toBe("precondition_failed");
    expect(wrong.headers.get("etag")).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/); // as a GET answers it
    // A weak tag names a version like a strong one: Cloudflare weakens the ETags it compresses,
    // and a client echoing the one it was given must not get a 412 for the current version.
    const weakOld = await api("PATCH", `/products/${p.id}`, {
      headers: { "if-match": 'W/"v7"' },
      body: { stock: 3 },
    });
    expect(weakOld.status).toBe(412);

    // The GET's ETag as a compressing proxy hands it on: W/"v1.<digest>".
    const right = await api<ProductDetail>("PATCH", `/products/${p.id}`, {
      headers: { "if-match": `W/${wrong.headers.get("etag")}` },
      body: { stock: 3 },
    });
    expect(right.status).toBe(200);
    expect(right.body).toMatchObject({ stock: 3, version: 2 });

    const wrongDelete = await api("DELETE", `/products/${p.id}`, {
      headers: { "if-match": '"v1"' },
    });
    expect(wrongDelete.status).toBe(412);
    expect((await api("GET", `/products/${p.id}`)).status).toBe(200);

    const del = await api("DELETE", `/products/${p.id}`, { headers: { "if-match": '"v2"' } });
    expect(del.status).toBe(204);
    expect((await api("GET", `/products/${p.id}`)).status).toBe(404);
  });

  it("If-Match: * matches any live version; a list matches any of its tags", async () => {
    const p = await newProduct(catA);
    const star = await api("PATCH", `/products/${p.id}`, {
      headers: { "if-match": "*" },
      body: { name: "Star" },
    });
    expect(star.status).toBe(200);
    const list = await api("PATCH", `/products/${p.id}`, {
      headers: { "if-match": '"v9", "v2"' },
      body: { name: "Listed" },
    });
    expect(list.status).toBe(200);
    expect(list.headers.get("etag")).toMatch(/^"v3\./);
  });

  it("If-None-Match on a write: 412 when it names the current version (weakly), else applies", async () => {
    const p = await newProduct(catA);
    const read = await api<ProductDetail>("GET", `/products/${p.id}`);
    const etag = read.headers.get("etag") ?? "";
    for (const [method, body] of [
      ["PATCH", { name: "Never" }],
      ["DELETE", undefined],
    ] as const) {
      const refused = await api<ErrorBody>(method, `/products/${p.id}`, {
        headers: { "if-none-match": `"v7", W/${etag}` },
        body,
      });
      expect(refused.status, method).toBe(412);
      expect(refused.body.error.code).toBe("precondition_failed");
      expect(refused.body.error.message).toBe(
        `If-None-Match names the current version of product ${p.id}`,
      );
      // The ETag a GET answers, as it is: a client can send it straight back.
      expect(refused.headers.get("etag")).toBe(etag);
    }
    const applied = await api<ProductDetail>("PATCH", `/products/${p.id}`, {
      headers: { "if-none-match": '"v7", "c.abc"' },
      body: { name: "Renamed" },
    });
    expect(applied.status).toBe(200);
    expect(applied.body).toMatchObject({ name: "Renamed", version: 2 });
    // The old tag names version 1, which is gone: a delete conditioned on it not being current.
    const del = await api("DELETE", `/products/${p.id}`, { headers: { "if-none-match": etag } });
    expect(del.status).toBe(204);
  });

  it("a 412 names the header whose check failed (If-Match is evaluated first)", async () => {
    const p = await newProduct(catA); // v1
    const cases: [Record<string, string>, string][] = [
      [
        { "if-match": '"v1"', "if-none-match": '"v1"' },
        `If-None-Match names the current version of product ${p.id}`,
      ],
      [
        { "if-match": '"v9"', "if-none-match": '"v1"' },
        `If-Match does not name the current version of product ${p.id}`,
      ],
      [
        { "if-match": '"v1"', "if-none-match": "*" },
        `If-None-Match: * asks for product ${p.id} not to exist, and it does`,
      ],
      [{ "if-match": 'W/"v9"' }, `If-Match does not name the current version of product ${p.id}`],
    ];
    for (const method of ["PATCH", "DELETE"] as const) {
      for (const [headers, message] of cases) {
        const res = await api<ErrorBody>(method, `/products/${p.id}`, {
          headers,
          body: method === "PATCH" ? { stock: 1 } : undefined,
        });
        expect(res.status, `${method} ${JSON.stringify(headers)}`).toBe(412);
        expect(res.body.error.message, `${method} ${JSON.stringify(headers)}`).toBe(message);
      }
    }
    // POST /products/{id}/reserve answers the same 412.
    const reserve = await api<ErrorBody>("POST", `/products/${p.id}/reserve`, {
      headers: { "if-match": '"v1"', "if-none-match": '"v1"' },
      body: { quantity: 1 },
    });
    expect(reserve.status).toBe(412);
    expect(reserve.body.error.message).toBe(
      `If-None-Match names the current version of product ${p.id}`,
    );
    expect((await api<ProductDetail>("GET", `/products/${p.id}`)).body.version).toBe(1);
  });

  it("a DELETE's 204 is no-store, as every write response", async () => {
    const p = await newProduct(catA);
    const del = await api("DELETE", `/products/${p.id}`);
    expect(del.status).toBe(204);
    expect(del.headers.get("cache-control")).toBe("no-store");
  });

  it("If-Match accepts the composite ETag a GET answered (its version part decides)", async () => {
    const p = await newProduct(catA);
    const read = await api<ProductDetail>("GET", `/products/${p.id}`);
    const etag = read.headers.get("etag") ?? "";
    const ok = await api<ProductDetail>("PATCH", `/products/${p.id}`, {
      headers: { "if-match": etag },
      body: { stock: 9 },
    });
    expect(ok.status).toBe(200);
    // The same tag again names version 1, which is gone: 412; a weakened copy of the current
    // one (as Cloudflare's compression hands it on) names version 2 and goes through.
    const stale = await api<ErrorBody>("PATCH", `/products/${p.id}`, {
      headers: { "if-match": etag },
      body: { stock: 8 },
    });
    expect(stale.status).toBe(412);
    // Its ETag is the product's current one, exactly as a GET answers it (not the bare "v2").
    const now = await api("GET", `/products/${p.id}`);
    expect(stale.headers.get("etag")).toBe(now.headers.get("etag"));
    expect(stale.headers.get("etag")).toMatch(/^"v2\.[A-Za-z0-9_-]{16}"$/);
    const weak = await api("PATCH", `/products/${p.id}`, {
      headers: { "if-match": `W/${ok.headers.get("etag")}` },
      body: { stock: 8 },
    });
    expect(weak.status).toBe(200);
  });
});

describe("a 412 while the winning write's invalidation is on its way", () => {
  it("names the version the write lost to, in the ETag header as in the body, and a retry with it succeeds", async () => {
    const token = stack.spareGatewayTokens.preconditions;
    // The winner's Redis calls are slow: its invalidation is still on its way when the loser's
    // 412 reads the product through the cache, which still holds version 1.
    const slow = apiFor(prefix, {
      env: {
        REDIS_TIMEOUT_MS: "5000",
        RATE_LIMIT_TIMEOUT_MS: "5000",
        UPSTASH_REDIS_REST_TOKEN: token,
      },
    });
    const product = await newProduct(await newCategory("412"));
    const held = (await api("GET", `/products/${product.id}`)).headers.get("etag") ?? "";
    expect((await api("GET", `/products/${product.id}`)).headers.get("x-cache")).toBe("HIT");
    expect(held).toMatch(/^"v1\./);
    await gatewayControl("faults", { body: { latencyMs: 600 }, token });
    try {
      const winner = slow("PATCH", `/products/${product.id}`, {
        headers: { "if-match": held },
        body: { priceCents: 2 },
      });
      const committed = async () =>
        withDb(async (db) => {
          const [row] = await db
            .select({ version: products.version })
            .from(products)
            .where(eq(products.id, product.id));
          return row?.version === 2;
        });
      for (let i = 0; !(await committed()); i++) {
        if (i > 500) throw new Error("the winning write never committed");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const loser = await api<ErrorBody>("PATCH", `/products/${product.id}`, {
        headers: { "if-match": held },
        body: { priceCents: 3 },
      });
      expect(loser.status).toBe(412);
      expect(loser.body.error.details?.currentVersion).toBe(2);
      // It named version 1, the tag the client had just sent: a retry with it failed again.
      const current = loser.headers.get("etag") ?? "";
      expect(current).toMatch(/^"v2[".]/);
      const retry = await api("PATCH", `/products/${product.id}`, {
        headers: { "if-match": current },
        body: { priceCents: 3 },
      });
      expect(retry.status).toBe(200);
      expect((await winner).status).toBe(200);
    } finally {
      await gatewayControl("faults", { method: "DELETE", token });
    }
  });
});

describe("GET /products (keyset pagination)", () => {
  it("walks a category exactly once through the nextCursor chain", async () => {
    const cat = await newCategory("pages");
    const made: number[] = [];
    for (let i = 0; i < 7; i++) made.push((await newProduct(cat)).id);
    const seen = await allPages(`category=${cat}`, 3);
    expect(seen).toEqual(made);
    expect(new Set(seen).size).toBe(seen.length);
    // Page size 7 exactly: the last page says there is no next.
    const whole = await api<ProductPage>("GET", `/products?category=${cat}&limit=7`);
    expect(whole.body.items.map((p) => p.id)).toEqual(made);
    expect(whole.body.nextCursor).toBeNull();
  });

  it("lists summaries without stock, ordered by id, 20 by default, with cache headers", async () => {
    const first = await api<ProductPage>("GET", "/products");
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache")).toBe("MISS");
    expect(first.headers.get("etag")).toMatch(/^"c\.[A-Za-z0-9_-]{16}"$/);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    expect(first.body.items).toHaveLength(20);
    const ids = first.body.items.map((p) => p.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(Object.keys(first.body.items[0] ?? {}).sort()).toEqual(
      ["categoryId", "currency", "id", "name", "priceCents", "sku"].sort(),
    );
    expect(first.body.nextCursor).toBe(ids.at(-1));
    const again = await api("GET", "/products?limit=20&cursor=");
    // "cursor=" is not a positive integer
    expect(again.status).toBe(400);
    const hit = await api<ProductPage>("GET", "/products?limit=20");
    expect(hit.headers.get("x-cache")).toBe("HIT");
  });

  it("a product moving category makes both categories' lists miss", async () => {
    const from = await newCategory("from");
    const to = await newCategory("to");
    const mover = await newProduct(from);
    const stayer = await newProduct(to);
    for (const cat of [from, to]) {
      await api("GET", `/products?category=${cat}`);
      const hit = await api("GET", `/products?category=${cat}`);
      expect(hit.headers.get("x-cache")).toBe("HIT");
    }
    const moved = await api<ProductDetail>("PATCH", `/products/${mover.id}`, {
      body: { categoryId: to },
    });
    expect(moved.status).toBe(200);
    expect(moved.body.category.id).toBe(to);

    const oldList = await api<ProductPage>("GET", `/products?category=${from}`);
    expect(oldList.headers.get("x-cache")).toBe("MISS");
    expect(oldList.body.items.map((p) => p.id)).toEqual([]);
    const newList = await api<ProductPage>("GET", `/products?category=${to}`);
    expect(newList.headers.get("x-cache")).toBe("MISS");
    expect(newList.body.items.map((p) => p.id)).toEqual(
      [mover.id, stayer.id].sort((a, b) => a - b),
    );

    // The moved product's detail carries the new category (and its tag).
    const detail = await api<ProductDetail>("GET", `/products/${mover.id}`);
    expect(detail.headers.get("x-cache")).toBe("MISS");
    expect(detail.body.category.id).toBe(to);
    // The write answered the row as a read of it does: the new category's name and slug (its
    // UPDATE and read-back are one statement), the same timestamps.
    expect(moved.body).toEqual(detail.body);
    const tags = await testRedis().hget<Record<string, string>>(
      `${prefix}:e:product:${mover.id}`,
      "tg",
    );
    expect(Object.keys(tags ?? {})).toEqual([`category:${to}`]);
  });

  it("POST makes its category's list miss and includes the new product", async () => {
    const cat = await newCategory("post");
    const before = await newProduct(cat);
    await api("GET", `/products?category=${cat}`);
    expect((await api("GET", `/products?category=${cat}`)).headers.get("x-cache")).toBe("HIT");
    const created = await newProduct(cat, { currency: "EUR", stock: 2 });
    expect(created).toMatchObject({ currency: "EUR", stock: 2, version: 1 });
    const list = await api<ProductPage>("GET", `/products?category=${cat}`);
    expect(list.headers.get("x-cache")).toBe("MISS");
    expect(list.body.items.map((p) => p.id)).toEqual([before.id, created.id]);
    const row = await outboxRowFor(`product:${created.id}`);
    expect(row?.event).toMatchObject({ origin: "POST /products" });
    expect(row?.processedAt).toBeInstanceOf(Date);
  });

  it("DELETE: 404 afterwards, gone from its list, a second DELETE is 404", async () => {
    const cat = await newCategory("del");
    const keep = await newProduct(cat);
    const gone = await newProduct(cat);
    await api("GET", `/products/${gone.id}`);
    expect((await api("GET", `/products/${gone.id}`)).headers.get("x-cache")).toBe("HIT");
    await api("GET", `/products?category=${cat}`);

    const del = await api("DELETE", `/products/${gone.id}`);
    expect(del.status).toBe(204);
    expect(del.body).toBeNull();
    expect((await api("GET", `/products/${gone.id}`)).status).toBe(404);
    const list = await api<ProductPage>("GET", `/products?category=${cat}`);
    expect(list.headers.get("x-cache")).toBe("MISS");
    expect(list.body.items.map((p) => p.id)).toEqual([keep.id]);
    const again = await api<ErrorBody>("DELETE", `/products/${gone.id}`);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe("not_found");
    expect((await api("PATCH", `/products/${gone.id}`, { body: { stock: 1 } })).status).toBe(404);

    const row = await outboxRowFor(`product:${gone.id}`);
    expect(row?.event).toMatchObject({
      origin: "DELETE /products/:id",
      versions: { [`product:${gone.id}`]: 2 },
    });
    expect(row?.processedAt).toBeInstanceOf(Date);
  });
});

describe("bad input", () => {
  it("a category id that names no category leaves no key without a TTL behind", async () => {
    // Found by an API audit: each such read left `t:category:<id>` for ever (the lease captured
    // the counter, the empty page was never stored), so any client could fill Redis with keys
    // volatile-* eviction cannot take.
    const redis = testRedis();
    for (const id of [900_001, 900_002]) {
      const page = await api<ProductPage>("GET", `/products?category=${id}`);
      expect(page.status).toBe(200);
      expect(page.body.items).toEqual([]);
      const keys: string[] = [];
      for await (const batch of scanKeys(redis, `${prefix}:*:${id}*`, 1000)) keys.push(...batch);
      for (const key of keys) expect(await redis.pttl(key), key).toBeGreaterThan(0);
      expect(keys).toContain(`${prefix}:t:category:${id}`);
    }
  });

  it("list query: limit, category and cursor must be in range", async () => {
    expectValidation(await api("GET", "/products?limit=1000"), "limit");
    expectValidation(await api("GET", "/products?limit=0"), "limit");
    expectValidation(await api("GET", "/products?limit=ten"), "limit");
    expectValidation(await api("GET", "/products?category=abc"), "category");
    expectValidation(await api("GET", "/products?category=0"), "category");
    expectValidation(await api("GET", "/products?cursor=-1"), "cursor");
    // One spelling per position (one cache key): no leading zeros, no zero, within int4.
    expectValidation(await api("GET", "/products?cursor=007"), "cursor");
    expectValidation(await api("GET", "/products?cursor=0"), "cursor");
    expectValidation(await api("GET", "/products?cursor=3000000000"), "cursor");
  });

  it("POST: unknown fields, wrong types, missing fields, malformed JSON -> 400", async () => {
    const valid = { sku: `TP-${run}-bad`, name: "x", categoryId: catA, priceCents: 1 };
    expectValidation(await api("POST", "/products", { body: { ...valid, colour: "red" } }));
    expectValidation(
      await api("POST", "/products", { body: { ...valid, priceCents: "12" } }),
      "priceCents",
    );
    expectValidation(
      await api("POST", "/products", { body: { ...valid, priceCents: -1 } }),
      "priceCents",
    );
    expectValidation(
      await api("POST", "/products", { body: { ...valid, currency: "usd" } }),
      "currency",
    );
    expectValidation(
      await api("POST", "/products", { body: { ...valid, sku: "has space" } }),
      "sku",
    );
    expectValidation(await api("POST", "/products", { body: { name: "x" } }), "sku");
    expectValidation(await api("POST", "/products", { body: "{not json" }), "(root)");
    expectValidation(await api("POST", "/products", { body: "[1,2]" }));
  });

  it("POST: duplicate sku -> 409, unknown category -> 422", async () => {
    const p = await newProduct(catA);
    const dup = await api<ErrorBody>("POST", "/products", {
      body: { sku: p.sku, name: "dup", categoryId: catA, priceCents: 1 },
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("conflict");
    const orphan = await api<ErrorBody>("POST", "/products", {
      body: { sku: `TP-${run}-orphan`, name: "o", categoryId: 2_000_000_000, priceCents: 1 },
    });
    expect(orphan.status).toBe(422);
    expect(orphan.body.error.code).toBe("invalid_reference");
    expect(orphan.body.error.details?.issues?.map((i) => i.path)).toEqual(["categoryId"]);
  });

  it("PATCH to an unknown category: a missing product is 404 and a lost condition 412 first, else 422", async () => {
    const p = await newProduct(catA);
    const orphan = { categoryId: 2_000_000_000 };
    const gone = await api("PATCH", "/products/2000000000", { body: orphan });
    expect(gone.status).toBe(404);
    const lost = await api("PATCH", `/products/${p.id}`, {
      body: orphan,
      headers: { "if-match": '"v7"' },
    });
    expect(lost.status).toBe(412);
    expect(lost.headers.get("etag")).toMatch(/^"v1/);
    const refused = await api<ErrorBody>("PATCH", `/products/${p.id}`, {
      body: orphan,
      headers: { "if-match": '"v1"' },
    });
    expect(refused.status).toBe(422);
    expect(refused.body.error.details?.issues?.map((i) => i.path)).toEqual(["categoryId"]);
    expect((await api<ProductDetail>("GET", `/products/${p.id}`)).body.version).toBe(1);
  });

  it("PATCH: empty body, sku, unknown fields, wrong types, malformed JSON -> 400; unknown id -> 404", async () => {
    const p = await newProduct(catA);
    expectValidation(await api("PATCH", `/products/${p.id}`, { body: {} }), "(root)");
    expectValidation(await api("PATCH", `/products/${p.id}`, { body: { sku: "NEW" } }));
    expectValidation(await api("PATCH", `/products/${p.id}`, { body: { stock: 1.5 } }), "stock");
    expectValidation(await api("PATCH", `/products/${p.id}`, { body: { name: 3 } }), "name");
    expectValidation(await api("PATCH", `/products/${p.id}`, { body: "{" }), "(root)");
    expectValidation(await api("PATCH", "/products/abc", { body: { stock: 1 } }), "id");
    const unknown = await api("PATCH", "/products/2000000000", { body: { stock: 1 } });
    expect(unknown.status).toBe(404);
    const orphan = await api("PATCH", `/products/${p.id}`, {
      body: { categoryId: 2_000_000_000 },
    });
    expect(orphan.status).toBe(422);
    // None of that changed the product.
    const same = await api<ProductDetail>("GET", `/products/${p.id}`);
    expect(same.body.version).toBe(1);
  });
});

describe("Redis unreachable", () => {
  // A URL nothing listens on: no gateway token or fault knob is shared with other files.
  const deadRedis = { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:9" };

  it("reads bypass the cache and writes still commit (the outbox keeps the event)", async () => {
    const p = await newProduct(catA);
    const read = await api<ProductDetail>("GET", `/products/${p.id}`, { env: deadRedis });
    expect(read.status).toBe(200);
    expect(read.headers.get("x-cache")).toBe("BYPASS");
    // Same policy as a cached read: the value is as fresh as Postgres, every client revalidates.
    expect(read.headers.get("cache-control")).toBe("no-cache");
    expect(read.headers.get("etag")).toMatch(/^"v1\./);
    expect(read.body).toEqual(p);
    const list = await api<ProductPage>("GET", `/products?category=${catA}`, { env: deadRedis });
    expect(list.status).toBe(200);
    expect(list.headers.get("x-cache")).toBe("BYPASS");
    expect(list.body.items.map((i) => i.id)).toContain(p.id);

    const patched = await api<ProductDetail>("PATCH", `/products/${p.id}`, {
      env: deadRedis,
      body: { priceCents: 1 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ priceCents: 1, version: 2 });
    // The event is in the outbox for the queue consumer or the cron to deliver.
    const row = await outboxRowFor(`product:${p.id}`);
    expect(row?.event).toMatchObject({ versions: { [`product:${p.id}`]: 2 } });
  });
});

describe("productWarmable", () => {
  it("parses keys, loads many live rows in one query, and uses the read path's options", async () => {
    expect(productWarmable.parse("product:42")).toBe(42);
    for (const bad of ["product:0", "product:abc", "products:list:all:0:20", "category:4"]) {
      expect(productWarmable.parse(bad)).toBeNull();
    }
    expect(productWarmable.key(42)).toBe("product:42");
    const a = await newProduct(catA);
    const b = await newProduct(catB);
    const dead = await newProduct(catA);
    expect((await api("DELETE", `/products/${dead.id}`)).status).toBe(204);
    const loaded = await withDb((db) =>
      productWarmable.loadMany(db, [a.id, b.id, dead.id, 2_000_000_000]),
    );
    expect([...loaded.keys()].sort((x, y) => x - y)).toEqual([a.id, b.id]);
    expect(loaded.get(b.id)).toEqual(b);
    const entry = productWarmable.entry(b);
    const route = productEntryOptions(b.id);
    const plain = (o: object) => ({ ...o, versionOf: undefined, tagsOf: undefined });
    expect(plain(entry)).toEqual(plain(route));
    expect(entry.tagsOf?.(b)).toEqual([`category:${catB}`]);
    expect(entry.versionKey).toBe(`product:${b.id}`);
    expect(entry.versionOf?.(b)).toBe(1);
  });
});
