import { createServer } from "node:net";
import { Client, type DatabaseError } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase, migrateDatabase, migrateDatabaseWithReport } from "../../db/migrate";
import { seedDatabase } from "../../db/seed";
import {
  databaseExists,
  databaseName,
  dropThrowawayDatabase,
  throwawayDatabaseUrl,
} from "./pg-throwaway";

const SMALL = { categories: 5, products: 1200, users: 20 } as const;

const created: string[] = [];
function newDatabaseUrl(suffix = ""): string {
  const url = throwawayDatabaseUrl(suffix);
  created.push(url);
  return url;
}

async function withClient<T>(databaseUrl: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A port with nothing listening, to provoke ECONNREFUSED. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

function pgError(err: unknown): DatabaseError {
  return err as DatabaseError;
}

interface ProductRow {
  id: number;
  sku: string;
  name: string;
  description: string | null;
  category_slug: string;
  price_cents: number;
  currency: string;
  stock: number;
}

async function catalogue(databaseUrl: string) {
  return withClient(databaseUrl, async (c) => {
    const products = await c.query<ProductRow>(
      `SELECT p.id, p.sku, p.name, p.description, c.slug AS category_slug,
              p.price_cents, p.currency, p.stock
         FROM products p JOIN categories c ON c.id = p.category_id
        ORDER BY p.id`,
    );
    const categories = await c.query(
      "SELECT id, slug, name, description FROM categories ORDER BY id",
    );
    const users = await c.query("SELECT id, email, name, tier FROM users ORDER BY id");
    return { products: products.rows, categories: categories.rows, users: users.rows };
  });
}

afterAll(async () => {
  for (const url of created) await dropThrowawayDatabase(url);
  for (const url of created) expect(await databaseExists(url)).toBe(false);
});

describe("ensureDatabase", () => {
  it("creates a missing database once, then reports it exists", async () => {
    const url = newDatabaseUrl();
    expect(await ensureDatabase(url)).toBe(true);
    expect(await ensureDatabase(url)).toBe(false);
    expect(await databaseExists(url)).toBe(true);
  });

  it("quotes the database name instead of interpolating it", async () => {
    const url = newDatabaseUrl(`_q"uote; drop`);
    expect(databaseName(url)).toContain(`"`);
    expect(await ensureDatabase(url)).toBe(true);
    expect(await databaseExists(url)).toBe(true);
  });

  it("tolerates concurrent creators", async () => {
    const url = newDatabaseUrl();
    const results = await Promise.all([
      ensureDatabase(url),
      ensureDatabase(url),
      ensureDatabase(url),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it("says what to do when Postgres is not running", async () => {
    const url = new URL(throwawayDatabaseUrl());
    url.hostname = "127.0.0.1";
    url.port = String(await closedPort());
    await expect(ensureDatabase(url.toString())).rejects.toThrow(
      /Postgres at 127\.0\.0\.1:\d+ refused the connection: start Postgres \(Debian: `pg_ctlcluster <version> main start`; macOS: `brew services start postgresql`\) or set DATABASE_URL/,
    );
  });
});

describe("migrateDatabase", () => {
  let url: string;
  beforeAll(async () => {
    url = newDatabaseUrl();
    await ensureDatabase(url);
  });

  it("applies the migrations once and is idempotent", async () => {
    const first = await migrateDatabaseWithReport(url);
    expect(first.applied).toBeGreaterThanOrEqual(1);
    expect(first.total).toBe(first.available);
    const lines: string[] = [];
    const second = await migrateDatabaseWithReport(url, { log: (l) => lines.push(l) });
    expect(second.applied).toBe(0);
    expect(second.total).toBe(first.total);
    expect(lines.join("\n")).toMatch(/up to date/);
    await expect(migrateDatabase(url)).resolves.toBeUndefined();
  });

  it("serialises concurrent migrators on a fresh database", async () => {
    const fresh = newDatabaseUrl();
    await ensureDatabase(fresh);
    const reports = await Promise.all([
      migrateDatabaseWithReport(fresh),
      migrateDatabaseWithReport(fresh),
      migrateDatabaseWithReport(fresh),
    ]);
    expect(reports.reduce((n, r) => n + r.applied, 0)).toBe(reports[0]?.available);
  });

  it("creates the tables, indexes and constraints", async () => {
    await withClient(url, async (c) => {
      const tables = await c.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual(
        expect.arrayContaining(["cache_outbox", "categories", "products", "users"]),
      );

      const indexes = await c.query<{ indexname: string; indexdef: string }>(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
      );
      const byName = new Map(indexes.rows.map((r) => [r.indexname, r.indexdef]));
      expect(byName.get("products_category_id_id_idx")).toMatch(/\(category_id, id\)/);
      expect(byName.get("cache_outbox_pending_prefix_id_idx")).toMatch(
        /\(prefix, id\) WHERE \(processed_at IS NULL\)/,
      );
      expect(byName.get("products_sku_unique")).toBeDefined();
      expect(byName.get("categories_slug_unique")).toBeDefined();
      expect(byName.get("users_email_unique")).toBeDefined();

      const defaults = await c.query<{
        table_name: string;
        column_name: string;
        column_default: string;
      }>(
        `SELECT table_name, column_name, column_default FROM information_schema.columns
          WHERE table_schema = 'public' AND column_default IS NOT NULL`,
      );
      const def = (t: string, col: string) =>
        defaults.rows.find((r) => r.table_name === t && r.column_name === col)?.column_default;
      expect(def("products", "currency")).toMatch(/'USD'/);
      expect(def("products", "version")).toBe("1");
      expect(def("users", "tier")).toMatch(/'standard'/);
      expect(def("cache_outbox", "attempts")).toBe("0");
    });
  });

  it("enforces the CHECK, UNIQUE and FK constraints", async () => {
    await withClient(url, async (c) => {
      await c.query("BEGIN");
      try {
        const cat = await c.query<{ id: number }>(
          "INSERT INTO categories (slug, name) VALUES ('c', 'C') RETURNING id",
        );
        const catId = cat.rows[0]?.id;
        const insert = (sku: string, price: number, stock: number, categoryId = catId) =>
          c.query(
            "INSERT INTO products (sku, name, category_id, price_cents, stock) VALUES ($1, 'n', $2, $3, $4) RETURNING id, currency, version",
            [sku, categoryId, price, stock],
          );

        const ok = await insert("A-1", 100, 3);
        expect(ok.rows[0]).toMatchObject({ currency: "USD", version: 1 });

        // Savepoints keep the transaction usable after each expected failure.
        const expectFailure = async (
          run: () => Promise<unknown>,
          code: string,
          constraint: string,
        ) => {
          await c.query("SAVEPOINT s");
          const err = await run().then(
            () => undefined,
            (e: unknown) => pgError(e),
          );
          await c.query("ROLLBACK TO SAVEPOINT s");
          expect(err, `expected ${constraint}`).toBeDefined();
          expect(err?.code).toBe(code);
          expect(err?.constraint).toBe(constraint);
        };

        await expectFailure(() => insert("A-2", 100, -1), "23514", "products_stock_non_negative");
        await expectFailure(
          () => insert("A-3", -1, 1),
          "23514",
          "products_price_cents_non_negative",
        );
        await expectFailure(() => insert("A-1", 100, 1), "23505", "products_sku_unique");
        await expectFailure(
          () => insert("A-4", 100, 1, 999_999),
          "23503",
          "products_category_id_categories_id_fk",
        );
        await expectFailure(
          () => c.query("UPDATE products SET currency = 'usd' WHERE sku = 'A-1'"),
          "23514",
          "products_currency_iso4217",
        );
        await expectFailure(
          () => c.query("DELETE FROM categories WHERE id = $1", [catId]),
          "23503",
          "products_category_id_categories_id_fk",
        );

        // The reservation pattern the schema is designed for: one conditional
        // UPDATE that either takes the stock or touches nothing.
        const reserve = (n: number) =>
          c.query(
            "UPDATE products SET stock = stock - $1, version = version + 1 WHERE sku = 'A-1' AND stock >= $1 AND deleted_at IS NULL RETURNING stock, version",
            [n],
          );
        expect((await reserve(2)).rows).toEqual([{ stock: 1, version: 2 }]);
        expect((await reserve(2)).rowCount).toBe(0);

        await expectFailure(
          () =>
            c.query("INSERT INTO cache_outbox (event, prefix, attempts) VALUES ('{}', 'ec', -1)"),
          "23514",
          "cache_outbox_attempts_non_negative",
        );
        const outbox = await c.query(
          `INSERT INTO cache_outbox (event, prefix) VALUES ('{"type":"product.updated","id":1}', 'ec') RETURNING attempts, processed_at, event`,
        );
        expect(outbox.rows[0]).toEqual({
          attempts: 0,
          processed_at: null,
          event: { type: "product.updated", id: 1 },
        });
      } finally {
        await c.query("ROLLBACK");
      }
    });
  });

  it("points at db/migrate.ts when the database does not exist", async () => {
    const missing = throwawayDatabaseUrl("_missing");
    await expect(migrateDatabase(missing)).rejects.toThrow(/does not exist.*npm run db:migrate/);
  });
});

describe("seedDatabase", () => {
  let urlA: string;
  let urlB: string;
  beforeAll(async () => {
    urlA = newDatabaseUrl();
    urlB = newDatabaseUrl();
    for (const url of [urlA, urlB]) {
      await ensureDatabase(url);
      await migrateDatabase(url);
    }
  });

  it("seeds the requested counts in batches with progress", async () => {
    const lines: string[] = [];
    const result = await seedDatabase(urlA, { ...SMALL, log: (l) => lines.push(l) });
    expect(result).toEqual({ seeded: true, ...SMALL });
    expect(lines).toEqual(
      expect.arrayContaining([
        "categories 5/5",
        "products 500/1200",
        "products 1000/1200",
        "products 1200/1200",
        "users 20/20",
      ]),
    );

    const { products, categories, users } = await catalogue(urlA);
    expect(products).toHaveLength(SMALL.products);
    expect(categories).toHaveLength(SMALL.categories);
    expect(users).toHaveLength(SMALL.users);
    expect(new Set(products.map((p) => p.sku)).size).toBe(SMALL.products);
    expect(new Set(categories.map((c) => c.slug)).size).toBe(SMALL.categories);
    for (const p of products) {
      expect(p.sku).toMatch(/^[A-Z]{3}-\d{6}$/);
      expect(p.name.length).toBeGreaterThan(5);
      expect(p.price_cents).toBeGreaterThan(0);
      expect(p.stock).toBeGreaterThanOrEqual(0);
      expect(p.currency).toBe("USD");
    }
    for (const u of users) expect(u.email).toMatch(/^[a-z]+\.[a-z]+\.\d+@example\.com$/);
    // Some items are sold out so reservation failures are reachable with seed data.
    expect(products.some((p) => p.stock === 0)).toBe(true);
    // Every category gets products (keyset pagination has something to page).
    expect(new Set(products.map((p) => p.category_slug)).size).toBe(SMALL.categories);
  });

  it("is a no-op the second time", async () => {
    const before = await catalogue(urlA);
    const lines: string[] = [];
    const result = await seedDatabase(urlA, { ...SMALL, log: (l) => lines.push(l) });
    expect(result).toEqual({ seeded: false, ...SMALL });
    expect(lines.join("\n")).toMatch(/skipped/);
    expect(await catalogue(urlA)).toEqual(before);
  });

  it("is deterministic across databases", async () => {
    const result = await seedDatabase(urlB, SMALL);
    expect(result.seeded).toBe(true);
    const [a, b] = await Promise.all([catalogue(urlA), catalogue(urlB)]);
    expect(b).toEqual(a);
    expect(a.products[0]?.name).toBe(b.products[0]?.name);
  });

  it("refuses to seed over a half-populated catalogue unless forced", async () => {
    await withClient(urlB, (c) => c.query("DELETE FROM products"));
    await expect(seedDatabase(urlB, SMALL)).rejects.toThrow(/force/);

    const lines: string[] = [];
    const result = await seedDatabase(urlB, {
      ...SMALL,
      products: 300,
      force: true,
      log: (l) => lines.push(l),
    });
    expect(result).toEqual({ seeded: true, ...SMALL, products: 300 });
    expect(lines.join("\n")).toMatch(/wiped/);

    const [a, b] = await Promise.all([catalogue(urlA), catalogue(urlB)]);
    // Ids restart and the product stream is a prefix of the larger seed.
    expect(b.products).toEqual(a.products.slice(0, 300));
    expect(b.categories).toEqual(a.categories);
  });

  it("points at db/migrate.ts when the tables are missing", async () => {
    const bare = newDatabaseUrl();
    await ensureDatabase(bare);
    await expect(seedDatabase(bare, SMALL)).rejects.toThrow(/run `npm run db:migrate` first/);
  });

  it("rejects nonsense counts", async () => {
    await expect(seedDatabase(urlA, { products: -1 })).rejects.toThrow(/non-negative integer/);
    await expect(seedDatabase(urlA, { categories: 0, products: 10 })).rejects.toThrow(
      /at least one category/,
    );
  });
});

describe("scriptDatabaseUrl (the db: scripts' target)", () => {
  it("takes DATABASE_URL from the shell, else .dev.vars (the running stack's), else the default", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { DEFAULT_DATABASE_URL, scriptDatabaseUrl } = await import("../../db/migrate");
    const dir = mkdtempSync(join(tmpdir(), "dev-vars-"));
    const vars = join(dir, ".dev.vars");
    writeFileSync(vars, '# local\nDATABASE_URL="postgres://postgres@127.0.0.1:5432/mine"\n');
    expect(scriptDatabaseUrl({ DATABASE_URL: "postgres://x@h/shell" }, vars)).toEqual({
      url: "postgres://x@h/shell",
      from: "DATABASE_URL",
    });
    expect(scriptDatabaseUrl({}, vars)).toEqual({
      url: "postgres://postgres@127.0.0.1:5432/mine",
      from: ".dev.vars",
    });
    expect(scriptDatabaseUrl({}, join(dir, "none")).url).toBe(DEFAULT_DATABASE_URL);
  });
});
