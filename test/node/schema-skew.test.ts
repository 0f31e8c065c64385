import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Unstable_DevWorker } from "wrangler";
import { ensureDatabase, MIGRATIONS_FOLDER, migrateDatabase } from "../../db/migrate";
import { startDevWorker } from "./dev-worker";
import { dropThrowawayDatabase, throwawayDatabaseUrl } from "./pg-throwaway";

/**
 * Migrations and releases out of step. Migrations run from a machine (README "Deploy"), before
 * or after `npm run deploy`, and during a deploy two releases serve side by side: for a while
 * the new release runs on the schema before its migration, and the previous release on the
 * schema after it. Real Postgres, and for the new release the real Worker (workerd).
 */
const ROOT = resolve(import.meta.dirname, "../..");
const FILES = readdirSync(MIGRATIONS_FOLDER)
  .filter((f) => f.endsWith(".sql"))
  .sort();

/** Runs the migration files `from`..`to` (indexes into FILES) on `url`, statement by statement. */
async function runMigrations(url: string, from: number, to: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const file of FILES.slice(from, to + 1)) {
      const text = readFileSync(join(MIGRATIONS_FOLDER, file), "utf8");
      for (const statement of text.split("--> statement-breakpoint")) {
        if (statement.trim()) await client.query(statement);
      }
    }
  } finally {
    await client.end();
  }
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, values?: unknown[]) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe("the new release on the schema before its migration (0004 not run yet)", () => {
  const stack = inject("stack");
  const url = throwawayDatabaseUrl("_pre0004");
  const ADMIN = `admin-${randomBytes(8).toString("hex")}`;
  let worker: Unstable_DevWorker;
  let product: number;

  beforeAll(async () => {
    await ensureDatabase(url);
    await runMigrations(url, 0, FILES.indexOf("0003_outbox_queued.sql"));
    const [category] = await sql<{ id: number }>(
      url,
      "insert into categories (slug, name) values ('skew', 'Skew') returning id",
    );
    const [row] = await sql<{ id: number }>(
      url,
      "insert into products (sku, name, category_id, price_cents) values ('SKEW-1', 'Before', $1, 100) returning id",
      [category?.id],
    );
    product = row?.id ?? 0;
    worker = await startDevWorker({
      DATABASE_URL: url,
      UPSTASH_REDIS_REST_URL: stack.gatewayUrl,
      UPSTASH_REDIS_REST_TOKEN: stack.gatewayToken,
      ADMIN_TOKEN: ADMIN,
      CACHE_PREFIX: `sk${randomBytes(3).toString("hex")}`,
    });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await dropThrowawayDatabase(url);
  });

  const patch = (name: string) =>
    worker.fetch(`/products/${product}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });

  it("reads are served", async () => {
    const res = await worker.fetch(`/products/${product}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { name: string }).name).toBe("Before");
  });

  it("a write answers 503 database_unavailable with Retry-After (nothing written), not 500, until the migration runs", async () => {
    const res = await patch("During");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(res.status).toBe(503);
    expect(body.error.code).toBe("database_unavailable");
    expect(body.error.message).toMatch(/migration/i);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    // The transaction rolled back: the row did not change either.
    const [row] = await sql<{ name: string; version: number }>(
      url,
      "select name, version from products where id = $1",
      [product],
    );
    expect(row).toEqual({ name: "Before", version: 1 });

    await runMigrations(url, FILES.indexOf("0004_outbox_dead_letter.sql"), FILES.length - 1);
    const after = await patch("After");
    expect(after.status).toBe(200);
  });
});

/**
 * The release before a migration, on the schema after it: its own statements (built by drizzle
 * from its own db/schema.ts, taken from git) must still run, or every write of the release still
 * serving fails the moment the migration lands. Migrations must therefore only add what the
 * previous release does not have to name: nullable columns or columns with a default, indexes.
 */
describe("the previous release on the schema after a migration", () => {
  const url = throwawayDatabaseUrl("_post");
  beforeAll(async () => {
    await ensureDatabase(url);
    await migrateDatabase(url);
  }, 60_000);
  afterAll(async () => {
    await dropThrowawayDatabase(url);
  });

  /** The commit that added `file`, and the previous release's schema module (from git). */
  async function previousSchema(file: string) {
    const added = execFileSync(
      "git",
      ["log", "--diff-filter=A", "--format=%h", "--", `db/migrations/${file}`],
      { cwd: ROOT, encoding: "utf8" },
    )
      .trim()
      .split("\n")
      .at(-1);
    if (!added) throw new Error(`git does not know ${file}`);
    const source = execFileSync("git", ["show", `${added}^:db/schema.ts`], {
      cwd: ROOT,
      encoding: "utf8",
    });
    // Under bench/.ab (gitignored), so that drizzle-orm resolves from this repository.
    const dir = join(ROOT, "bench/.ab", `schema-${added}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "schema.ts"), source);
    return (await import(join(dir, "schema.ts"))) as typeof import("../../db/schema");
  }

  async function writeAndRead(schema: typeof import("../../db/schema")) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const db = drizzle({ client });
      const values = { event: { keys: ["k"], origin: "previous release" } } as Record<
        string,
        unknown
      >;
      // The previous release wrote every column it knew; prefix only once it had one.
      if ("prefix" in schema.cacheOutbox) values.prefix = "ec";
      const [row] = await db
        .insert(schema.cacheOutbox)
        .values(values as typeof schema.cacheOutbox.$inferInsert)
        .returning();
      await db.select().from(schema.cacheOutbox).limit(1);
      return row;
    } finally {
      await client.end();
    }
  }

  it.each(FILES.slice(2))("the release before %s writes and reads the outbox", async (file) => {
    const row = await writeAndRead(await previousSchema(file));
    expect(row).toMatchObject({ event: { keys: ["k"] } });
  });

  it("0001 (prefix NOT NULL without a default) broke the release before it: why a migration must be additive", async () => {
    const failed = await writeAndRead(await previousSchema("0001_outbox_prefix.sql")).catch(
      (error: unknown) => (error as { cause?: { code?: string; column?: string } }).cause,
    );
    // not_null_violation on "prefix": every write of that release failed once 0001 ran.
    expect(failed).toMatchObject({ code: "23502", column: "prefix" });
  });
});
