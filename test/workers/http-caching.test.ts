import { sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import type { CategoryDetail } from "../../src/domain/categories";
import type { ProductDetail, ProductPage } from "../../src/domain/products";
import { apiFor, type ErrorBody, expectValidation, postProduct } from "./api";
import { insertCategory, withDb } from "./db";
import { workerCache } from "./stack";

/**
 * HTTP semantics that never outlive a write (validators, Cache-Control) and cheap misses for
 * what does not exist (negative entries, bounded list keys), through the real Worker, gateway
 * and Postgres.
 */
const prefix = `thc${Date.now().toString(36)}`;
const run = Date.now().toString(36).toUpperCase();
const api = apiFor(prefix);
const cache = () => workerCache(prefix);

let seq = 0;
const newCategory = (label: string) =>
  insertCategory({ slug: `thc-${label}-${run}`.toLowerCase(), name: `HTTP caching ${label}` });
const newProduct = (categoryId: number) =>
  postProduct(api, {
    sku: `THC-${run}-${++seq}`,
    name: `Caching product ${seq}`,
    categoryId,
    priceCents: 500 + seq,
  });

/** Burns and returns the next product id: ids above it do not exist yet. */
const nextProductId = () =>
  withDb(async (db) => {
    const result = await db.execute<{ id: string }>(
      sql`select nextval(pg_get_serial_sequence('products', 'id'))::text as id`,
    );
    return Number(result.rows[0]?.id);
  });

/** Loader calls this isolate's engines counted under the prefix (the Worker shares them). */
const loads = async () => (await cache().stats()).loads ?? 0;

describe("validators cover the whole representation", () => {
  it("a category rename turns the old product ETag's 304 into a 200 with the new name", async () => {
    const cat = await newCategory("rename");
    const p = await newProduct(cat);
    const first = await api<ProductDetail>("GET", `/products/${p.id}`);
    const before = first.headers.get("etag") ?? "";
    const cached = await api("GET", `/products/${p.id}`, { headers: { "if-none-match": before } });
    expect(cached.status).toBe(304);
    expect(cached.headers.get("x-cache")).toBe("HIT");

    const renamed = await api("PATCH", `/categories/${cat}`, { body: { name: "Renamed" } });
    expect(renamed.status).toBe(200);

    // With the ETag "v<product version>" this answered 304 and the client kept the old name.
    const after = await api<ProductDetail>("GET", `/products/${p.id}`, {
      headers: { "if-none-match": before },
    });
    expect(after.status).toBe(200);
    expect(after.body.category.name).toBe("Renamed");
    expect(after.body.version).toBe(1); // the product row itself did not change
    const now = after.headers.get("etag") ?? "";
    expect(now).not.toBe(before);
    expect(now).toMatch(/^"v1\./);
    // The new ETag revalidates from a cache hit, without Postgres.
    const loadsBefore = await loads();
    const again = await api("GET", `/products/${p.id}`, { headers: { "if-none-match": now } });
    expect(again.status).toBe(304);
    expect(again.headers.get("x-cache")).toBe("HIT");
    expect(await loads()).toBe(loadsBefore);
    // And the write is still conditioned on the product's version, which the rename kept.
    const write = await api("PATCH", `/products/${p.id}`, {
      headers: { "if-match": before },
      body: { stock: 4 },
    });
    expect(write.status).toBe(200);
  });

  it("a product list's validator changes with an entry, and 304s only while nothing changed", async () => {
    const cat = await newCategory("list");
    const a = await newProduct(cat);
    await newProduct(cat);
    const path = `/products?category=${cat}`;
    const first = await api<ProductPage>("GET", path);
    const etag = first.headers.get("etag") ?? "";
    expect(etag).toMatch(/^"c\./);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const same = await api("GET", path, { headers: { "if-none-match": etag } });
    expect(same.status).toBe(304);
    expect(same.headers.get("x-cache")).toBe("HIT");

    // A write to an entry on the page: 200 with the new price, new validator.
    await api("PATCH", `/products/${a.id}`, { body: { priceCents: 1 } });
    const changed = await api<ProductPage>("GET", path, { headers: { "if-none-match": etag } });
    expect(changed.status).toBe(200);
    expect(changed.body.items.find((i) => i.id === a.id)?.priceCents).toBe(1);
    const etag2 = changed.headers.get("etag") ?? "";
    expect(etag2).not.toBe(etag);

    // A new entry: 200 again.
    const c = await newProduct(cat);
    const grown = await api<ProductPage>("GET", path, { headers: { "if-none-match": etag2 } });
    expect(grown.status).toBe(200);
    expect(grown.body.items.map((i) => i.id)).toContain(c.id);

    // A tag bump that changes nothing the list shows (the category's name is not in a
    // summary): the entry is reloaded (MISS) and the same bytes keep the same validator.
    const etag3 = grown.headers.get("etag") ?? "";
    await api("PATCH", `/categories/${cat}`, { body: { description: "touched" } });
    const reloaded = await api("GET", path, { headers: { "if-none-match": etag3 } });
    expect(reloaded.headers.get("x-cache")).toBe("MISS");
    expect(reloaded.status).toBe(304);
  });

  it("GET /categories: validator changes with a rename (a tag/key of the list), 304 otherwise", async () => {
    const cat = await newCategory("all");
    const first = await api<CategoryDetail[]>("GET", "/categories");
    const etag = first.headers.get("etag") ?? "";
    expect(etag).toMatch(/^"c\./);
    expect((await api("GET", "/categories", { headers: { "if-none-match": etag } })).status).toBe(
      304,
    );
    await api("PATCH", `/categories/${cat}`, { body: { name: "Renamed in the list" } });
    const after = await api<CategoryDetail[]>("GET", "/categories", {
      headers: { "if-none-match": etag },
    });
    expect(after.status).toBe(200);
    expect(after.body.find((c) => c.id === cat)?.name).toBe("Renamed in the list");
  });
});

describe("If-Match on a read", () => {
  it("200 while it names the current ETag (or is *), 412 with the current ETag after a write, 404 for what does not exist", async () => {
    const cat = await newCategory("ifmatch");
    const p = await newProduct(cat);
    const first = await api<ProductDetail>("GET", `/products/${p.id}`);
    const held = first.headers.get("etag") ?? "";
    expect(held).toMatch(/^"v\d+\.[A-Za-z0-9_-]{16}"$/);
    for (const condition of [held, `"other", ${held}`, "*"]) {
      const ok = await api<ProductDetail>("GET", `/products/${p.id}`, {
        headers: { "if-match": condition },
      });
      expect(ok.status, condition).toBe(200);
    }
    // A weak copy of the tag never matches If-Match (strong comparison).
    const weak = await api("GET", `/products/${p.id}`, { headers: { "if-match": `W/${held}` } });
    expect(weak.status).toBe(412);

    expect((await api("PATCH", `/products/${p.id}`, { body: { stock: 3 } })).status).toBe(200);
    const stale = await api<ErrorBody>("GET", `/products/${p.id}`, {
      headers: { "if-match": held },
    });
    expect(stale.status).toBe(412);
    expect(stale.body.error.code).toBe("precondition_failed");
    const current = stale.headers.get("etag");
    expect(current).toMatch(/^"v\d+\.[A-Za-z0-9_-]{16}"$/);
    expect(current).not.toBe(held);
    expect(stale.headers.get("cache-control")).toBe("no-store");
    // Lists and categories answer the same way; a missing entity stays a 404.
    const list = await api("GET", `/categories/${cat}`, { headers: { "if-match": '"v999999"' } });
    expect(list.status).toBe(412);
    const missing = await api("GET", "/products/2000000107", { headers: { "if-match": held } });
    expect(missing.status).toBe(404);
  });
});

describe("Cache-Control", () => {
  it("entities and lists: no-cache; a 404: no-store; writes: no-store", async () => {
    const cat = await newCategory("cc");
    const p = await newProduct(cat);
    for (const path of [`/products/${p.id}`, "/products", `/categories/${cat}`, "/categories"]) {
      const res = await api("GET", path);
      expect(res.headers.get("cache-control"), path).toBe("no-cache");
      expect(res.headers.get("etag"), path).toBeTruthy();
    }
    const missing = await api("GET", "/products/2000000001");
    expect(missing.status).toBe(404);
    expect(missing.headers.get("cache-control")).toBe("no-store");
    expect(missing.headers.get("etag")).toBeNull();
    const write = await api("PATCH", `/products/${p.id}`, { body: { stock: 2 } });
    expect(write.headers.get("cache-control")).toBe("no-store");
  });
});

describe("negative entries", () => {
  it("a second read of a missing product, category or user is a HIT that never reaches Postgres", async () => {
    for (const path of ["/products/2000000002", "/categories/2000000002", "/users/2000000002"]) {
      const first = await api<ErrorBody>("GET", path);
      expect(first.status, path).toBe(404);
      expect(first.body.error.code).toBe("not_found");
      expect(first.headers.get("x-cache"), path).toBe("MISS");
      const before = await loads();
      const second = await api<ErrorBody>("GET", path);
      expect(second.status, path).toBe(404);
      expect(second.headers.get("x-cache"), path).toBe("HIT");
      expect(await loads(), path).toBe(before);
    }
  });

  it("a deleted product is a cached 404 too", async () => {
    const p = await newProduct(await newCategory("deleted"));
    expect((await api("DELETE", `/products/${p.id}`)).status).toBe(204);
    expect((await api("GET", `/products/${p.id}`)).headers.get("x-cache")).toBe("MISS");
    const again = await api("GET", `/products/${p.id}`);
    expect(again.status).toBe(404);
    expect(again.headers.get("x-cache")).toBe("HIT");
  });

  it("a POST that creates a cached-missing id makes it visible on the very next read", async () => {
    const cat = await newCategory("create");
    // The id the POST will get is unknown; cache the absence of the next 30 and retry if other
    // files' inserts pushed it past them.
    for (let attempt = 0; attempt < 5; attempt++) {
      const base = await nextProductId();
      const ids = Array.from({ length: 30 }, (_, i) => base + 1 + i);
      for (const id of ids) expect((await api("GET", `/products/${id}`)).status).toBe(404);
      expect((await api("GET", `/products/${ids[0]}`)).headers.get("x-cache")).toBe("HIT");
      const created = await newProduct(cat);
      if (!ids.includes(created.id)) continue;
      const read = await api<ProductDetail>("GET", `/products/${created.id}`);
      expect(read.status).toBe(200);
      expect(read.body).toEqual(created);
      // Its neighbours are still cached as missing: the create ended only its own entry.
      const neighbour = ids.find((id) => id > created.id);
      if (neighbour !== undefined) {
        const n = await api("GET", `/products/${neighbour}`);
        expect(n.status).toBe(404);
        expect(n.headers.get("x-cache")).toBe("HIT");
      }
      return;
    }
    throw new Error("five POSTs in a row got an id outside the 30 cached as missing");
  });

  it("race: reads of a missing id racing its create never leave the 404 behind the ack", async () => {
    const cat = await newCategory("race");
    for (let round = 0; round < 4; round++) {
      const base = await nextProductId();
      const ids = Array.from({ length: 4 }, (_, i) => base + 1 + i);
      let stop = false;
      const statuses: number[] = [];
      // Readers hammer the ids the create may get, before, during and after it.
      const readers = ids.map(async (id) => {
        while (!stop) statuses.push((await api("GET", `/products/${id}`)).status);
      });
      const created = await newProduct(cat);
      // Acknowledged: from here on, every read of the id must find it, whatever the readers
      // still in flight fill behind it.
      const afterAck: number[] = [];
      for (let i = 0; i < 5; i++)
        afterAck.push((await api("GET", `/products/${created.id}`)).status);
      stop = true;
      await Promise.all(readers);
      afterAck.push((await api("GET", `/products/${created.id}`)).status);
      expect(afterAck.every((s) => s === 200)).toBe(true);
      const entry = await cache().inspect(`product:${created.id}`, `product:${created.id}`);
      if (entry.entry) expect(entry.entry.value).not.toBeNull();
      expect(statuses.every((s) => s === 200 || s === 404)).toBe(true);
    }
  });
});

describe("list keys are bounded", () => {
  let cat: number;
  let ids: number[];
  beforeAll(async () => {
    cat = await newCategory("cursor");
    ids = [];
    for (let i = 0; i < 5; i++) ids.push((await newProduct(cat)).id);
  });

  it.each(["abc", "0", "-1", "007", "1.5", "1e3", "", "99999999999", "2147483648"])(
    "a malformed cursor %j is a 400 on the cursor field and no key",
    async (cursor) => {
      const res = await api("GET", `/products?category=${cat}&cursor=${cursor}`);
      expectValidation(res, "cursor");
    },
  );

  it("a cursor the server issued is cached; one it never issued is answered but not cached", async () => {
    const first = await api<ProductPage>("GET", `/products?category=${cat}&limit=2`);
    expect(first.body.nextCursor).toBe(ids[1]);
    const issued = `/products?category=${cat}&limit=2&cursor=${first.body.nextCursor}`;
    expect((await api("GET", issued)).headers.get("x-cache")).toBe("MISS");
    const page2 = await api<ProductPage>("GET", issued);
    expect(page2.headers.get("x-cache")).toBe("HIT");
    expect(page2.body.items.map((i) => i.id)).toEqual(ids.slice(2, 4));

    // A well-formed cursor that is no item of this list: a correct page, never a key.
    const foreign = (ids[4] ?? 0) + 1_000_000;
    const invented = `/products?category=${cat}&cursor=${foreign}`;
    for (let i = 0; i < 2; i++) {
      const res = await api<ProductPage>("GET", invented);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-cache")).toBe("MISS");
      expect(res.body).toEqual({ items: [], nextCursor: null });
    }
    expect((await cache().inspect(`products:list:${cat}:${foreign}:20`)).entry).toBeNull();
    // Between two items (id 1 below the first): same rows as no cursor, not cached either.
    const below = await api<ProductPage>("GET", `/products?category=${cat}&cursor=1`);
    expect(below.body.items.map((i) => i.id)).toEqual(ids);
    expect((await cache().inspect(`products:list:${cat}:1:20`)).entry).toBeNull();
  });

  it("a category that does not exist is an empty page, never a key; an empty real one is cached", async () => {
    const missing = 2_000_000_000 + Math.floor(Math.random() * 100_000_000);
    for (const limit of [20, 100]) {
      for (let i = 0; i < 2; i++) {
        const res = await api<ProductPage>("GET", `/products?category=${missing}&limit=${limit}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("x-cache")).toBe("MISS");
        expect(res.body).toEqual({ items: [], nextCursor: null });
      }
      expect((await cache().inspect(`products:list:${missing}:0:${limit}`)).entry).toBeNull();
    }
    // A category of ours with no products yet: its empty page is bounded by the data, cached.
    const empty = await newCategory("empty");
    expect((await api("GET", `/products?category=${empty}`)).headers.get("x-cache")).toBe("MISS");
    expect((await api("GET", `/products?category=${empty}`)).headers.get("x-cache")).toBe("HIT");
    // And it goes with the products tag when a product arrives.
    const first = await newProduct(empty);
    const after = await api<ProductPage>("GET", `/products?category=${empty}`);
    expect(after.body.items.map((i) => i.id)).toEqual([first.id]);
  });

  it("limits share the page of their size bucket: 1-20 one key, 21-100 another", async () => {
    const path = (limit: number) => `/products?category=${cat}&limit=${limit}`;
    const three = await api<ProductPage>("GET", path(3));
    const seven = await api<ProductPage>("GET", path(7));
    expect(seven.headers.get("x-cache")).toBe("HIT"); // the page of 20 loaded for limit=3
    expect(three.body.items.map((i) => i.id)).toEqual(ids.slice(0, 3));
    expect(three.body.nextCursor).toBe(ids[2]);
    expect(seven.body.items.map((i) => i.id)).toEqual(ids);
    expect(seven.body.nextCursor).toBeNull();
    // Different limits are different representations: different validators.
    expect(three.headers.get("etag")).not.toBe(seven.headers.get("etag"));
    expect((await api("GET", path(21))).headers.get("x-cache")).toBe("MISS");
    expect((await api("GET", path(100))).headers.get("x-cache")).toBe("HIT");
    const inspect = await cache().inspect(`products:list:${cat}:0:20`);
    expect(inspect.entry).not.toBeNull();
    expect((await cache().inspect(`products:list:${cat}:0:3`)).entry).toBeNull();
  });
});
