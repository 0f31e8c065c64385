import { beforeAll, describe, expect, it } from "vitest";
import {
  type CategoryDetail,
  categoryEntryOptions,
  categoryWarmable,
} from "../../src/domain/categories";
import type { ProductDetail, ProductPage } from "../../src/domain/products";
import { apiFor, type ErrorBody, expectValidation, postProduct } from "./api";
import { insertCategory, outboxRowFor, withDb } from "./db";

/** /categories through the real Worker; a fresh cache prefix per run (see products.test.ts). */
const prefix = `tc${Date.now().toString(36)}`;
const run = Date.now().toString(36);

const api = apiFor(prefix);

let seq = 0;
async function newCategory(name = `Categories test ${++seq}`): Promise<number> {
  return insertCategory({ slug: `tc-${run}-${++seq}`, name });
}

async function newProduct(categoryId: number): Promise<ProductDetail> {
  return postProduct(api, {
    sku: `TC-${run}-${++seq}`,
    name: `Item ${seq}`,
    categoryId,
    priceCents: 500,
  });
}

let mine: number;

beforeAll(async () => {
  mine = await newCategory("Lamps");
});

describe("GET /categories and /categories/:id", () => {
  it("lists every category: MISS then HIT", async () => {
    const miss = await api<CategoryDetail[]>("GET", "/categories");
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    expect(miss.body.find((c) => c.id === mine)).toMatchObject({ name: "Lamps", version: 1 });
    const ids = miss.body.map((c) => c.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const hit = await api<CategoryDetail[]>("GET", "/categories");
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.body).toEqual(miss.body);
  });

  it("one category: MISS, HIT, ETag and 304; 404 unknown; 400 bad id", async () => {
    const miss = await api<CategoryDetail>("GET", `/categories/${mine}`);
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    const etag = miss.headers.get("etag") ?? "";
    expect(etag).toMatch(new RegExp(`^"v${miss.body.version}\\.[A-Za-z0-9_-]{16}"$`));
    expect(miss.headers.get("cache-control")).toBe("no-cache");
    const hit = await api<CategoryDetail>("GET", `/categories/${mine}`);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.body).toEqual(miss.body);
    const notModified = await api("GET", `/categories/${mine}`, {
      headers: { "if-none-match": etag },
    });
    expect(notModified.status).toBe(304);

    const unknown = await api<ErrorBody>("GET", "/categories/2000000000");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");
    for (const bad of ["x", "0", "-1"])
      expectValidation(await api("GET", `/categories/${bad}`), "id");
  });
});

describe("PATCH /categories/:id", () => {
  it("a rename makes its product lists and the details embedding it miss, with the new name", async () => {
    const cat = await newCategory("Desks");
    const other = await newCategory("Chairs");
    const desk = await newProduct(cat);
    const chair = await newProduct(other);

    // Warm everything that could hold the old name.
    const warm = [
      `/products/${desk.id}`,
      `/products/${chair.id}`,
      `/products?category=${cat}`,
      `/products?category=${other}`,
      `/products`,
      `/categories/${cat}`,
      `/categories`,
    ];
    for (const path of warm) await api("GET", path);
    for (const path of warm)
      expect((await api("GET", path)).headers.get("x-cache"), path).toBe("HIT");

    const wrong = await api<ErrorBody>("PATCH", `/categories/${cat}`, {
      headers: { "if-match": '"v5"' },
      body: { name: "Writing Desks" },
    });
    expect(wrong.status).toBe(412);
    expect(wrong.body.error.code).toBe("precondition_failed");
    expect(wrong.headers.get("etag")).toBe('"v1"');
    // If-None-Match naming the current version: 412 as well.
    const current = await api<ErrorBody>("PATCH", `/categories/${cat}`, {
      headers: { "if-none-match": '"v1"' },
      body: { name: "Writing Desks" },
    });
    expect(current.status).toBe(412);

    const renamed = await api<CategoryDetail>("PATCH", `/categories/${cat}`, {
      headers: { "if-match": '"v1"' },
      body: { name: "Writing Desks", description: "Desks for writing" },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.headers.get("etag")).toMatch(/^"v2\.[A-Za-z0-9_-]{16}"$/);
    expect(renamed.body).toMatchObject({
      id: cat,
      name: "Writing Desks",
      description: "Desks for writing",
      version: 2,
    });

    const detail = await api<ProductDetail>("GET", `/products/${desk.id}`);
    expect(detail.headers.get("x-cache")).toBe("MISS");
    expect(detail.body.category).toMatchObject({ id: cat, name: "Writing Desks" });
    // The product row did not change (same version) but its representation did: new ETag.
    expect(detail.headers.get("etag")).toMatch(/^"v1\./);

    const list = await api<ProductPage>("GET", `/products?category=${cat}`);
    expect(list.headers.get("x-cache")).toBe("MISS");
    expect(list.body.items.map((p) => p.id)).toEqual([desk.id]);

    const one = await api<CategoryDetail>("GET", `/categories/${cat}`);
    expect(one.headers.get("x-cache")).toBe("MISS");
    // The same bytes as the PATCH answered, so the same ETag.
    expect(one.headers.get("etag")).toBe(renamed.headers.get("etag"));
    expect(one.body.name).toBe("Writing Desks");
    const all = await api<CategoryDetail[]>("GET", "/categories");
    expect(all.headers.get("x-cache")).toBe("MISS");
    expect(all.body.find((c) => c.id === cat)?.name).toBe("Writing Desks");

    // What does not embed the category is untouched.
    for (const path of [`/products/${chair.id}`, `/products?category=${other}`, "/products"]) {
      expect((await api("GET", path)).headers.get("x-cache"), path).toBe("HIT");
    }

    // The outbox row of the rename was applied and marked processed.
    const row = await outboxRowFor(`category:${cat}`);
    expect(row?.event).toMatchObject({
      origin: "PATCH /categories/:id",
      keys: [`category:${cat}`, "categories:all"],
      versions: { [`category:${cat}`]: 2 },
      // `categories` too: the list of every category, under any release's shape generation.
      tags: [`category:${cat}`, "categories"],
    });
    expect(row?.processedAt).toBeInstanceOf(Date);
  });

  it("clears a description with null; unknown id -> 404", async () => {
    const cat = await newCategory();
    const set = await api<CategoryDetail>("PATCH", `/categories/${cat}`, {
      body: { description: "temporary" },
    });
    expect(set.body.description).toBe("temporary");
    const cleared = await api<CategoryDetail>("PATCH", `/categories/${cat}`, {
      body: { description: null },
    });
    expect(cleared.status).toBe(200);
    expect(cleared.body).toMatchObject({ description: null, version: 3 });
    const unknown = await api("PATCH", "/categories/2000000000", { body: { name: "x" } });
    expect(unknown.status).toBe(404);
  });

  it("bad input -> 400 with field-level issues", async () => {
    const path = `/categories/${mine}`;
    expectValidation(await api("PATCH", path, { body: {} }), "(root)");
    expectValidation(await api("PATCH", path, { body: { slug: "new-slug" } }));
    expectValidation(await api("PATCH", path, { body: { name: "" } }), "name");
    expectValidation(await api("PATCH", path, { body: { name: 42 } }), "name");
    expectValidation(await api("PATCH", path, { body: '{"name":' }), "(root)");
    expectValidation(await api("PATCH", "/categories/abc", { body: { name: "x" } }), "id");
    const same = await api<CategoryDetail>("GET", path);
    expect(same.body).toMatchObject({ name: "Lamps", version: 1 });
  });
});

describe("categoryWarmable", () => {
  it("parses keys, loads many in one query, and shares the read path's options", async () => {
    expect(categoryWarmable.parse("category:7")).toBe(7);
    for (const bad of ["category:0", "categories:all", "product:7", "category:7x"]) {
      expect(categoryWarmable.parse(bad)).toBeNull();
    }
    expect(categoryWarmable.key(7)).toBe("category:7");
    const loaded = await withDb((db) => categoryWarmable.loadMany(db, [mine, 2_000_000_000]));
    expect([...loaded.keys()]).toEqual([mine]);
    const value = loaded.get(mine);
    if (!value) throw new Error("not loaded");
    const viaApi = await api<CategoryDetail>("GET", `/categories/${mine}`);
    expect(value).toEqual(viaApi.body);
    const entry = categoryWarmable.entry(value);
    expect({ ...entry, versionOf: undefined }).toEqual({
      ...categoryEntryOptions(mine),
      versionOf: undefined,
    });
    expect(entry.versionKey).toBe(`category:${mine}`);
    expect(entry.versionOf?.(value)).toBe(value.version);
  });
});

describe("OpenAPI", () => {
  it("documents the catalogue routes", async () => {
    const doc = await api<{ paths: Record<string, Record<string, unknown>> }>(
      "GET",
      "/openapi.json",
    );
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(["/products", "/products/{id}", "/categories", "/categories/{id}"]),
    );
    expect(Object.keys(doc.body.paths["/products/{id}"] ?? {}).sort()).toEqual([
      "delete",
      "get",
      "patch",
    ]);
  });
});
