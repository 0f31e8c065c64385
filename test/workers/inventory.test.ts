import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { categories, products } from "../../db/schema";
import { api, type ErrorBody } from "./api";
import { withDb } from "./db";
import { workerCache } from "./stack";

const prefix = "t_inventory";

interface Reservation {
  productId: number;
  reserved: number;
  remaining: number;
  version: number;
}

let serial = 0;
/** A product of this file's own, so reservations never change the seeded catalogue. */
async function newProduct(stock: number, options: { deleted?: boolean } = {}) {
  const tag = `${Date.now().toString(36)}-${(serial++).toString(36)}`;
  return withDb(async (db) => {
    const [category] = await db.select({ id: categories.id }).from(categories).limit(1);
    if (!category) throw new Error("the seed has no categories");
    const [row] = await db
      .insert(products)
      .values({
        sku: `T-INV-${tag}`,
        name: `Reservable ${tag}`,
        categoryId: category.id,
        priceCents: 1999,
        stock,
        deletedAt: options.deleted ? new Date() : null,
      })
      .returning();
    if (!row) throw new Error("insert returned no row");
    return row;
  });
}

async function stockOf(id: number) {
  const [row] = await withDb((db) =>
    db
      .select({ stock: products.stock, version: products.version })
      .from(products)
      .where(eq(products.id, id)),
  );
  return row;
}

const reserve = (id: number | string, body: unknown) =>
  api<Reservation & ErrorBody>("POST", `/products/${id}/reserve`, { prefix, body });

describe("POST /products/:id/reserve", () => {
  it("never oversells: 25 concurrent reservations of 1 against a stock of 10", async () => {
    const product = await newProduct(10);
    const results = await Promise.all(
      Array.from({ length: 25 }, () => reserve(product.id, { quantity: 1 })),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 409);
    expect(ok).toHaveLength(10);
    expect(refused).toHaveLength(15);
    // Each success saw a distinct stock level: the reservations were serialised on the row.
    expect(ok.map((r) => r.body.remaining).sort((a, b) => a - b)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
    ]);
    expect(new Set(ok.map((r) => r.body.version)).size).toBe(10);
    for (const r of refused) {
      expect(r.body.error.code).toBe("insufficient_stock");
      expect(r.body.error.message).toContain("only 0 left");
    }
    expect(await stockOf(product.id)).toEqual({ stock: 0, version: 11 });
  });

  it("answers with the remaining stock and the new version", async () => {
    const product = await newProduct(7);
    const res = await reserve(product.id, { quantity: 3 });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.body).toEqual({ productId: product.id, reserved: 3, remaining: 4, version: 2 });
    expect(await stockOf(product.id)).toEqual({ stock: 4, version: 2 });
  });

  it("says how many are left when the stock is short, and changes nothing", async () => {
    const product = await newProduct(3);
    const res = await reserve(product.id, { quantity: 5 });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("insufficient_stock");
    expect(res.body.error.message).toMatch(/only 3 left/);
    expect(res.body.error.details).toEqual({ available: 3, requested: 5 });
    expect(await stockOf(product.id)).toEqual({ stock: 3, version: 1 });
  });

  it("honours If-Match: 412 with the current ETag when it names another version, even short of stock", async () => {
    const product = await newProduct(5); // version 1
    const conditional = (ifMatch: string, quantity = 1) =>
      api<Reservation & ErrorBody>("POST", `/products/${product.id}/reserve`, {
        prefix,
        body: { quantity },
        headers: { "if-match": ifMatch },
      });
    // The ETag a GET handed out names version 1: the reservation applies.
    const etag = (await api("GET", `/products/${product.id}`, { prefix })).headers.get("etag");
    expect(etag).toMatch(/^"v1\./);
    const first = await conditional(etag ?? "");
    expect(first.status).toBe(200);
    expect(first.body.version).toBe(2);
    // The same ETag again: the product moved on to v2, so nothing is reserved.
    for (const quantity of [1, 100]) {
      const stale = await conditional(etag ?? "", quantity);
      expect(stale.status).toBe(412);
      expect(stale.body.error.code).toBe("precondition_failed");
      expect(stale.headers.get("etag")).toMatch(/^"v2\.[A-Za-z0-9_-]{16}"$/);
    }
    expect(await stockOf(product.id)).toEqual({ stock: 4, version: 2 });
    // A list naming the current version, and `*`, apply.
    expect((await conditional('"v1", "v2"')).status).toBe(200);
    expect((await conditional("*")).status).toBe(200);
    expect(await stockOf(product.id)).toEqual({ stock: 2, version: 4 });
    // Nothing we could have issued (no version at all): 412, not a reservation.
    expect((await conditional('"nope"')).status).toBe(412);
    // If-None-Match: * ("only if it does not exist"): the product exists, so 412 too.
    const absentOnly = await api<ErrorBody>("POST", `/products/${product.id}/reserve`, {
      prefix,
      body: { quantity: 1 },
      headers: { "if-none-match": "*" },
    });
    expect(absentOnly.status).toBe(412);
    expect(await stockOf(product.id)).toEqual({ stock: 2, version: 4 });
    // If-None-Match naming the current version (compared weakly): 412; naming others: applies.
    const none = (value: string) =>
      api<ErrorBody>("POST", `/products/${product.id}/reserve`, {
        prefix,
        body: { quantity: 1 },
        headers: { "if-none-match": value },
      });
    const current = await none('"v3", W/"v4"');
    expect(current.status).toBe(412);
    expect(current.headers.get("etag")).toBe(
      (await api("GET", `/products/${product.id}`, { prefix })).headers.get("etag"),
    );
    expect(await stockOf(product.id)).toEqual({ stock: 2, version: 4 });
    expect((await none('"v3", "c.abc"')).status).toBe(200);
    expect(await stockOf(product.id)).toEqual({ stock: 1, version: 5 });
    // On a product that does not exist it is the 404 it would be anyway.
    const missing = await api<ErrorBody>("POST", "/products/2000000000/reserve", {
      prefix,
      body: { quantity: 1 },
      headers: { "if-none-match": "*" },
    });
    expect(missing.status).toBe(404);
  });

  it("answers 404 for an unknown or deleted product", async () => {
    const missing = await reserve(2_000_000_000, { quantity: 1 });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("not_found");

    const deleted = await newProduct(5, { deleted: true });
    const res = await reserve(deleted.id, { quantity: 1 });
    expect(res.status).toBe(404);
    expect(await stockOf(deleted.id)).toEqual({ stock: 5, version: 1 });
  });

  it.each([
    ["0", { quantity: 0 }, "quantity"],
    ["-1", { quantity: -1 }, "quantity"],
    ["1001", { quantity: 1001 }, "quantity"],
    ["a string", { quantity: "2" }, "quantity"],
    ["a fraction", { quantity: 1.5 }, "quantity"],
    ["missing", {}, "quantity"],
    ["null", { quantity: null }, "quantity"],
    ["with an unknown field", { quantity: 1, price: 0 }, "(root)"],
  ])("rejects a quantity %s with 400", async (_, body, path) => {
    const product = await newProduct(5);
    const res = await reserve(product.id, body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.issues?.some((i) => i.path === path)).toBe(true);
    expect(await stockOf(product.id)).toEqual({ stock: 5, version: 1 });
  });

  it("rejects malformed JSON and bad ids with 400", async () => {
    const product = await newProduct(5);
    const malformed = await reserve(product.id, '{"quantity": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.details?.issues?.length).toBeGreaterThan(0);
    for (const id of ["0", "abc", "99999999999"]) {
      const res = await reserve(id, { quantity: 1 });
      expect(res.status).toBe(400);
      expect(res.body.error.details?.issues?.[0]?.path).toBe("id");
    }
  });

  it("leaves no cached product with the old stock behind", async () => {
    const product = await newProduct(10);
    const key = `product:${product.id}`;
    const cache = workerCache(prefix);
    // What the product detail route would have cached before the reservation.
    const cached = {
      id: product.id,
      sku: product.sku,
      name: product.name,
      description: product.description,
      categoryId: product.categoryId,
      priceCents: product.priceCents,
      currency: product.currency,
      stock: product.stock,
      version: product.version,
      createdAt: product.createdAt.toISOString(),
      updatedAt: product.updatedAt.toISOString(),
      category: { id: product.categoryId, slug: "x", name: "X" },
    };
    const options = { versionKey: key, tags: [`category:${product.categoryId}`] };
    expect((await cache.writeThrough(key, cached, cached.version, options)).written).toBe(true);

    const res = await reserve(product.id, { quantity: 4 });
    expect(res.status).toBe(200);

    const inspection = await cache.inspect(key, key);
    expect(inspection.entry).toBeNull();
    expect(inspection.version).toBe(res.body.version);
    expect(await cache.get(key, { versionKey: key })).toBeNull();
    // A fill that loaded the row before the reservation is refused when it lands late.
    const late = await cache.writeThrough(key, cached, cached.version, options);
    expect(late).toEqual({ written: false, reason: "version" });
    // The next load sees the new stock.
    const fresh = await cache.getOrLoad(
      key,
      async () => ({ ...cached, stock: 6, version: res.body.version }),
      { ...options, versionOf: (p) => p.version },
    );
    expect(fresh.value.stock).toBe(6);
  });

  it("writes the invalidation to the outbox in the same transaction and settles it", async () => {
    const product = await newProduct(2);
    const res = await reserve(product.id, { quantity: 1 });
    expect(res.status).toBe(200);
    const [row] = await withDb((db) =>
      db.execute<{ processed: boolean; event: Record<string, unknown> }>(
        sql`select processed_at is not null as processed, event from cache_outbox
            where event -> 'keys' ? ${`product:${product.id}`} order by id desc limit 1`,
      ),
    ).then((r) => r.rows);
    expect(row?.event).toMatchObject({
      keys: [`product:${product.id}`],
      versions: { [`product:${product.id}`]: 2 },
      origin: "inventory.reserve",
    });
    expect(row?.processed).toBe(true);
  });
});
