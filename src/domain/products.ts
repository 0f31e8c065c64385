import { and, asc, eq, gte, inArray, isNull, type SQL, sql } from "drizzle-orm";
import { categories, products } from "../../db/schema";
import type { CacheResult, EdgeCache, EntryOptions } from "../cache";
import type { Db } from "../runtime/services";
import { allowsNone, type VersionCondition, versionWhere } from "./conditions";
import type { ReadConsistency } from "./consistency";
import type { CacheChange } from "./events";
import type { Tx } from "./outbox";
import { idOfShapedKey, SHAPES, shaped } from "./shapes";
import type { Warmable } from "./warmable";

/**
 * Products: cache-aside with invalidate-on-write and version keys.
 *
 * Redis names (logical; the engine adds its prefix):
 *   product:{id}                                detail entry, guarded by version key product:{id},
 *                                               tagged category:{categoryId} (it embeds the category)
 *   products:list:{category|all}:{cursor}:{size}   one page of summaries, tagged products
 *                                               (+ category:{id} when filtered), unversioned;
 *                                               size is 20 or 100 (the limit's bucket), and only
 *                                               pages whose cursor names a live item of the list
 *                                               (one the server could have issued) are cached
 *
 * What invalidates what:
 *   product write    -> key product:{id}, version product:{id}, tag products (every list)
 *   category rename  -> tag category:{id}: every detail embedding it and every list filtered by it
 */

// ---------------------------------------------------------------- shapes

export interface CategoryRef {
  id: number;
  slug: string;
  name: string;
}

/** GET /products/:id. Dates are ISO strings so a cached copy and a loaded one are identical. */
export interface ProductDetail {
  id: number;
  sku: string;
  name: string;
  description: string | null;
  categoryId: number;
  category: CategoryRef;
  priceCents: number;
  currency: string;
  stock: number;
  version: number;
  createdAt: string;
  updatedAt: string;
}

/** A list item. No stock, so stock reservations never have to invalidate lists. */
export interface ProductSummary {
  id: number;
  sku: string;
  name: string;
  priceCents: number;
  currency: string;
  categoryId: number;
}

export interface ProductPage {
  items: ProductSummary[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: number | null;
}

export interface ProductListQuery {
  category?: number;
  cursor?: number;
  limit: number;
}

/** The page that is cached: `size` is a bucket of LIST_PAGE_SIZES, never the raw limit. */
export interface ProductPageQuery {
  category?: number;
  cursor?: number;
  size: number;
}

/**
 * A loaded page. `unanchored` marks a page whose cursor is not the id of a live item of the
 * list: no response of ours can have issued it (a nextCursor is always the last item's id), and
 * the empty page of a category that does not exist: such a page is answered but not cached, so
 * arbitrary cursors and category ids cannot grow the key space.
 */
export type LoadedProductPage = ProductPage & { unanchored?: true };

export interface NewProductInput {
  sku: string;
  name: string;
  description?: string | null;
  categoryId: number;
  priceCents: number;
  currency?: string;
  stock?: number;
}

export type ProductPatch = Partial<Omit<NewProductInput, "sku">>;

// ---------------------------------------------------------------- names and entry options

export const PRODUCT_TTL_MS = 5 * 60_000;
export const PRODUCT_STALE_TTL_MS = 60_000;
export const PRODUCT_LIST_TTL_MS = 2 * 60_000;
export const PRODUCT_LIST_STALE_TTL_MS = 60_000;
export const LIST_DEFAULT_LIMIT = 20;
export const LIST_MAX_LIMIT = 100;
/**
 * Page sizes that are loaded and cached; a request's limit is served from the smallest that
 * holds it, sliced. 100 limits × N cursors would be 100 keys per position; this is 2.
 */
export const LIST_PAGE_SIZES = [20, 100] as const;
/** A cached "not found" (negative entry) lives this long; any version advance ends it sooner. */
export const NOT_FOUND_TTL_MS = 30_000;

/** Tag of every cached product list. */
export const PRODUCTS_TAG = "products";
/** Tag of everything that embeds or is filtered by a category (shared with categories.ts). */
export const categoryTag = (id: number) => `category:${id}`;
/** Cache key of a product detail, under its shape generation (src/domain/shapes.ts). */
export const productKey = (id: number, generation: number = SHAPES.product) =>
  shaped(`product:${id}`, generation);
/**
 * Version key of a product: the detail's key without a generation, shared by every release's
 * entries, so a write of either invalidates both (shapes.ts).
 */
export const productVersionKey = (id: number) => `product:${id}`;
export const productListKey = (q: ProductPageQuery, generation: number = SHAPES.productList) =>
  shaped(`products:list:${q.category ?? "all"}:${q.cursor ?? 0}:${q.size}`, generation);

/** The cached page size that serves `limit` (1..LIST_MAX_LIMIT). */
export function pageSizeFor(limit: number): number {
  return LIST_PAGE_SIZES.find((size) => size >= limit) ?? LIST_MAX_LIMIT;
}

/**
 * The first `limit` items of a cached page, with the cursor of what follows them: the last
 * item's id when the page holds more, else the page's own nextCursor. Always a fresh object, so
 * nothing but `items` and `nextCursor` reaches the client.
 */
export function slicePage(page: ProductPage, limit: number): ProductPage {
  const items = page.items.slice(0, limit);
  const last = items.at(-1);
  const nextCursor = page.items.length > limit && last ? last.id : page.nextCursor;
  return { items, nextCursor };
}

/**
 * Entry options of a product detail; the route and the warmer both use these, so a warmed
 * entry is indistinguishable from a filled one. The detail embeds its category, so it carries
 * `category:{id}` — known only once the row is loaded, hence `tagsOf`: the engine checks that
 * tag against the load's start time, so a rename during the load drops the fill.
 */
export function productEntryOptions(id: number): EntryOptions<ProductDetail | null> {
  return {
    ttl: PRODUCT_TTL_MS,
    staleTtl: PRODUCT_STALE_TTL_MS,
    failSafe: true,
    tagsOf: (p) => (p ? [categoryTag(p.categoryId)] : []),
    versionKey: productVersionKey(id),
    versionOf: (p) => p?.version ?? 0,
    negativeTtl: NOT_FOUND_TTL_MS,
  };
}

export function productListEntryOptions(q: ProductPageQuery): EntryOptions<LoadedProductPage> {
  return {
    ttl: PRODUCT_LIST_TTL_MS,
    staleTtl: PRODUCT_LIST_STALE_TTL_MS,
    failSafe: true,
    tags: q.category === undefined ? [PRODUCTS_TAG] : [PRODUCTS_TAG, categoryTag(q.category)],
    cacheIf: (page) => !page.unanchored,
  };
}

/**
 * The cache change of a product write. The product's own detail goes by key + version; every
 * list goes by the `products` tag (filtered lists carry it too, so the old and the new category's
 * lists are covered when a product moves). The category tags are deliberately NOT bumped: they
 * would also throw away the detail of every other product of the category, whose embedded
 * category did not change.
 */
export function productWriteChange(
  id: number,
  version: number,
  generation: number = SHAPES.product,
): CacheChange {
  return {
    keys: [productKey(id, generation)],
    versions: { [productVersionKey(id)]: version },
    tags: [PRODUCTS_TAG],
  };
}

// ---------------------------------------------------------------- queries

/**
 * The columns of a detail, the product's from `source` (the table, or the rows an UPDATE
 * returned: updateProduct), its category's from the joined `categories`.
 */
function detailColumnsOf<S extends Record<DetailField, unknown>>(
  source: S,
): Pick<S, DetailField> & {
  categorySlug: typeof categories.slug;
  categoryName: typeof categories.name;
} {
  return {
    id: source.id,
    sku: source.sku,
    name: source.name,
    description: source.description,
    categoryId: source.categoryId,
    priceCents: source.priceCents,
    currency: source.currency,
    stock: source.stock,
    version: source.version,
    createdAt: source.createdAt,
    updatedAt: source.updatedAt,
    categorySlug: categories.slug,
    categoryName: categories.name,
  };
}

type DetailField =
  | "id"
  | "sku"
  | "name"
  | "description"
  | "categoryId"
  | "priceCents"
  | "currency"
  | "stock"
  | "version"
  | "createdAt"
  | "updatedAt";

const detailColumns = detailColumnsOf(products);

type DetailRow = {
  id: number;
  sku: string;
  name: string;
  description: string | null;
  categoryId: number;
  priceCents: number;
  currency: string;
  stock: number;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  categorySlug: string;
  categoryName: string;
};

function toDetail(row: DetailRow): ProductDetail {
  return {
    id: row.id,
    sku: row.sku,
    name: row.name,
    description: row.description,
    categoryId: row.categoryId,
    category: { id: row.categoryId, slug: row.categorySlug, name: row.categoryName },
    priceCents: row.priceCents,
    currency: row.currency,
    stock: row.stock,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

async function selectDetails(db: Db | Tx, where: SQL | undefined): Promise<ProductDetail[]> {
  const rows = await db
    .select(detailColumns)
    .from(products)
    .innerJoin(categories, eq(categories.id, products.categoryId))
    .where(where);
  return rows.map(toDetail);
}

/** One live product with its category, or null (unknown or soft-deleted). */
export async function loadProduct(db: Db | Tx, id: number): Promise<ProductDetail | null> {
  const [row] = await selectDetails(db, and(eq(products.id, id), isNull(products.deletedAt)));
  return row ?? null;
}

/** Many live products in ONE query (the warmer). */
export async function loadProducts(
  db: Db,
  ids: readonly number[],
): Promise<Map<number, ProductDetail>> {
  if (ids.length === 0) return new Map();
  const rows = await selectDetails(
    db,
    and(inArray(products.id, [...new Set(ids)]), isNull(products.deletedAt)),
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/**
 * Keyset page: ORDER BY id, from the cursor on. `id >= cursor` rather than `>` so the same query
 * tells whether the cursor is a live item of this list (anchored: a cursor we issued); one row
 * more than the page to know whether there is a next.
 */
export async function loadProductPage(db: Db, q: ProductPageQuery): Promise<LoadedProductPage> {
  const rows = await db
    .select({
      id: products.id,
      sku: products.sku,
      name: products.name,
      priceCents: products.priceCents,
      currency: products.currency,
      categoryId: products.categoryId,
    })
    .from(products)
    .where(
      and(
        isNull(products.deletedAt),
        q.category === undefined ? undefined : eq(products.categoryId, q.category),
        q.cursor === undefined ? undefined : gte(products.id, q.cursor),
      ),
    )
    .orderBy(asc(products.id))
    .limit(q.size + 2);
  let anchored = q.cursor === undefined || rows[0]?.id === q.cursor;
  // An empty first page of a category filter: a category of ours, or an id a client made up?
  // Only the first may be stored, or every invented id would add keys (one query, only here:
  // a page with rows proves its category exists).
  if (anchored && rows.length === 0 && q.category !== undefined) {
    anchored = await categoryExists(db, q.category);
  }
  const after = q.cursor !== undefined && rows[0]?.id === q.cursor ? rows.slice(1) : rows;
  const items = after.slice(0, q.size);
  const last = items.at(-1);
  const page = { items, nextCursor: after.length > q.size && last ? last.id : null };
  return anchored ? page : { ...page, unanchored: true };
}

async function categoryExists(db: Db, id: number): Promise<boolean> {
  const [row] = await db
    .select({ id: categories.id })
    .from(categories)
    .where(eq(categories.id, id))
    .limit(1);
  return row !== undefined;
}

// ---------------------------------------------------------------- cached reads

/**
 * GET /products/:id through the cache. `value` is null for an unknown or deleted product,
 * cached as a negative entry for NOT_FOUND_TTL_MS under the version the key had when the load
 * began: the create's version advance (and its key delete) makes the id visible at once.
 */
export function readProduct(
  cache: EdgeCache,
  db: Db,
  id: number,
  consistency: ReadConsistency = "strict",
): Promise<CacheResult<ProductDetail | null>> {
  return cache.getOrLoad(productKey(id), () => loadProduct(db, id), {
    ...productEntryOptions(id),
    consistency,
  });
}

/**
 * GET /products through the cache: the page of the limit's size bucket, sliced to the limit.
 * The key space is bounded by the data: (categories + 1) × 2 sizes × (live ids + 1) at most,
 * whatever cursors clients invent (see LoadedProductPage).
 */
export async function readProductPage(
  cache: EdgeCache,
  db: Db,
  q: ProductListQuery,
  consistency: ReadConsistency = "strict",
): Promise<CacheResult<ProductPage>> {
  const page: ProductPageQuery = {
    category: q.category,
    cursor: q.cursor,
    size: pageSizeFor(q.limit),
  };
  const result = await cache.getOrLoad(productListKey(page), () => loadProductPage(db, page), {
    ...productListEntryOptions(page),
    consistency,
  });
  return { ...result, value: slicePage(result.value, q.limit) };
}

// ---------------------------------------------------------------- writes (inside commitWrite)

/** Why a conditional write did not happen; the route maps it to 404 / 412 / 422. */
export class WriteRefused extends Error {
  constructor(
    readonly reason: "not_found" | "version_mismatch" | "unknown_category",
    readonly current?: number,
  ) {
    super(reason);
    this.name = "WriteRefused";
  }
}

async function assertCategory(tx: Tx, categoryId: number): Promise<void> {
  // FOR KEY SHARE: the category cannot be deleted under us before the FK check (belt and braces).
  const [row] = await tx
    .select({ id: categories.id })
    .from(categories)
    .where(eq(categories.id, categoryId))
    .for("key share");
  if (!row) throw new WriteRefused("unknown_category");
}

/** The live product `id` (not soft-deleted). */
const liveProduct = (id: number) => and(eq(products.id, id), isNull(products.deletedAt));

/**
 * Why a conditional UPDATE of the live product `id` changed no row: not_found, or
 * version_mismatch with the version it has now (read in the same transaction, on the failure
 * path only). Always throws.
 */
async function refusal(tx: Tx, id: number): Promise<never> {
  const [row] = await tx
    .select({ version: products.version })
    .from(products)
    .where(liveProduct(id));
  if (!row) throw new WriteRefused("not_found");
  throw new WriteRefused("version_mismatch", row.version);
}

export async function insertProduct(
  tx: Tx,
  input: NewProductInput,
): Promise<{ result: ProductDetail; cache: CacheChange }> {
  await assertCategory(tx, input.categoryId);
  const [row] = await tx
    .insert(products)
    .values({
      sku: input.sku,
      name: input.name,
      description: input.description ?? null,
      categoryId: input.categoryId,
      priceCents: input.priceCents,
      ...(input.currency === undefined ? {} : { currency: input.currency }),
      ...(input.stock === undefined ? {} : { stock: input.stock }),
    })
    .returning({ id: products.id });
  if (!row) throw new Error("product insert returned no row");
  const detail = await loadProduct(tx, row.id);
  if (!detail) throw new Error(`product ${row.id} vanished inside its own transaction`);
  return { result: detail, cache: productWriteChange(detail.id, detail.version) };
}

/**
 * The change and its condition are one UPDATE (If-Match / If-None-Match in its WHERE, as users
 * and inventory do): no other write can slip in between, and the write pays no locking SELECT
 * before it (a round trip to Postgres, with the row lock held). A categoryId that names no
 * category fails the UPDATE's foreign key (23503, answered as 422 like assertCategory's refusal);
 * a product that is gone or at another version comes first (404, 412), as it did when the row
 * was locked before the category was checked.
 */
export async function updateProduct(
  tx: Tx,
  id: number,
  patch: ProductPatch,
  condition: VersionCondition | null,
): Promise<{ result: ProductDetail; cache: CacheChange }> {
  const set: Partial<typeof products.$inferInsert> = {};
  if (patch.name !== undefined) set.name = patch.name;
  if (patch.description !== undefined) set.description = patch.description;
  if (patch.categoryId !== undefined) set.categoryId = patch.categoryId;
  if (patch.priceCents !== undefined) set.priceCents = patch.priceCents;
  if (patch.currency !== undefined) set.currency = patch.currency;
  if (patch.stock !== undefined) set.stock = patch.stock;
  if (allowsNone(condition)) return refusal(tx, id);
  // The UPDATE and the read of the detail it answers in ONE statement (a data-modifying CTE):
  // a round trip to Postgres less per write, the row lock held that much shorter. The join
  // reads the category the row has after the UPDATE (a move included).
  const updated = tx.$with("updated").as(
    tx
      .update(products)
      .set({ ...set, version: sql`${products.version} + 1` })
      .where(and(liveProduct(id), versionWhere(products.version, condition)))
      .returning(),
  );
  const [row] = await tx
    .with(updated)
    .select(detailColumnsOf(updated))
    .from(updated)
    .innerJoin(categories, eq(categories.id, updated.categoryId));
  if (!row) return refusal(tx, id);
  const detail = toDetail(row);
  return { result: detail, cache: productWriteChange(id, detail.version) };
}

/** One conditional UPDATE, as updateProduct. */
export async function softDeleteProduct(
  tx: Tx,
  id: number,
  condition: VersionCondition | null,
): Promise<{ result: { id: number; version: number }; cache: CacheChange }> {
  const [row] = allowsNone(condition)
    ? []
    : await tx
        .update(products)
        .set({ deletedAt: sql`now()`, version: sql`${products.version} + 1` })
        .where(and(liveProduct(id), versionWhere(products.version, condition)))
        .returning({ id: products.id, version: products.version });
  if (!row) return refusal(tx, id);
  return { result: row, cache: productWriteChange(id, row.version) };
}

// ---------------------------------------------------------------- warming

/** The cron warmer's view of product details: same key, same entry options as GET /products/:id. */
export const productWarmable: Warmable<ProductDetail> = {
  entity: "product",
  parse: (key) => idOfShapedKey(key, "product:", SHAPES.product),
  loadMany: loadProducts,
  key: (id) => productKey(id),
  entry: (value) => productEntryOptions(value.id) as EntryOptions<ProductDetail>,
};
