import { and, asc, eq, inArray, sql } from "drizzle-orm";
import { categories } from "../../db/schema";
import type { CacheResult, EdgeCache, EntryOptions } from "../cache";
import type { Db } from "../runtime/services";
import { allowsNone, type VersionCondition, versionWhere } from "./conditions";
import type { ReadConsistency } from "./consistency";
import type { CacheChange } from "./events";
import type { Tx } from "./outbox";
import { categoryTag, NOT_FOUND_TTL_MS, WriteRefused } from "./products";
import { idOfShapedKey, SHAPES, shaped } from "./shapes";
import type { Warmable } from "./warmable";

/**
 * Categories: cache-aside with invalidate-on-write and version keys.
 *
 * Redis names (logical; the engine adds its prefix):
 *   category:{id}     detail entry, guarded by version key category:{id}
 *   categories:all    every category, tagged categories, unversioned
 *   tag category:{id} carried by every product detail embedding the category and every product
 *                     list filtered by it: a rename bumps it once and all of them miss
 */

export interface CategoryDetail {
  id: number;
  slug: string;
  name: string;
  description: string | null;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface CategoryPatch {
  name?: string;
  description?: string | null;
}

export const CATEGORY_TTL_MS = 10 * 60_000;
export const CATEGORY_STALE_TTL_MS = 60_000;

export const CATEGORIES_TAG = "categories";
/** Cache key of the list of every category, under its shape generation (shapes.ts). */
export const categoriesAllKey = (generation: number = SHAPES.categoryList) =>
  shaped("categories:all", generation);
/** Cache key of a category detail, under its shape generation (src/domain/shapes.ts). */
export const categoryKey = (id: number, generation: number = SHAPES.category) =>
  shaped(`category:${id}`, generation);
/**
 * Version key of a category: its key without a generation (the same name as its tag, another
 * namespace), shared by every release's entries (shapes.ts).
 */
export const categoryVersionKey = (id: number) => `category:${id}`;

/** Entry options of a category detail, shared by the route and the warmer. */
export function categoryEntryOptions(id: number): EntryOptions<CategoryDetail | null> {
  return {
    ttl: CATEGORY_TTL_MS,
    staleTtl: CATEGORY_STALE_TTL_MS,
    failSafe: true,
    versionKey: categoryVersionKey(id),
    versionOf: (c) => (c as CategoryDetail).version,
    negativeTtl: NOT_FOUND_TTL_MS,
  };
}

export function categoryListEntryOptions(): EntryOptions<CategoryDetail[]> {
  return {
    ttl: CATEGORY_TTL_MS,
    staleTtl: CATEGORY_STALE_TTL_MS,
    failSafe: true,
    tags: [CATEGORIES_TAG],
  };
}

/**
 * What a category write makes the cache forget (see the header comment). The list of every
 * category goes by its `categories` tag as well as its key: the key delete names this release's
 * shape generation only, and the list another release caches under its own must go too
 * (shapes.ts).
 */
export function categoryWriteChange(
  id: number,
  version: number,
  generations: { category?: number; categoryList?: number } = {},
): CacheChange {
  return {
    keys: [categoryKey(id, generations.category), categoriesAllKey(generations.categoryList)],
    versions: { [categoryVersionKey(id)]: version },
    tags: [categoryTag(id), CATEGORIES_TAG],
  };
}

// ---------------------------------------------------------------- queries

const columns = {
  id: categories.id,
  slug: categories.slug,
  name: categories.name,
  description: categories.description,
  version: categories.version,
  createdAt: categories.createdAt,
  updatedAt: categories.updatedAt,
};

function toDetail(row: {
  id: number;
  slug: string;
  name: string;
  description: string | null;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}): CategoryDetail {
  return {
    ...row,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export async function loadCategory(db: Db | Tx, id: number): Promise<CategoryDetail | null> {
  const [row] = await db.select(columns).from(categories).where(eq(categories.id, id));
  return row ? toDetail(row) : null;
}

export async function loadCategories(db: Db): Promise<CategoryDetail[]> {
  const rows = await db.select(columns).from(categories).orderBy(asc(categories.id));
  return rows.map(toDetail);
}

/** Many categories in ONE query (the warmer). */
export async function loadCategoriesById(
  db: Db,
  ids: readonly number[],
): Promise<Map<number, CategoryDetail>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select(columns)
    .from(categories)
    .where(inArray(categories.id, [...new Set(ids)]));
  return new Map(rows.map((r) => [r.id, toDetail(r)]));
}

// ---------------------------------------------------------------- cached reads

/** `value` is null for an unknown category: a negative entry, ended by any version advance. */
export function readCategory(
  cache: EdgeCache,
  db: Db,
  id: number,
  consistency: ReadConsistency = "strict",
): Promise<CacheResult<CategoryDetail | null>> {
  return cache.getOrLoad(categoryKey(id), () => loadCategory(db, id), {
    ...categoryEntryOptions(id),
    consistency,
  });
}

export function readCategories(
  cache: EdgeCache,
  db: Db,
  consistency: ReadConsistency = "strict",
): Promise<CacheResult<CategoryDetail[]>> {
  return cache.getOrLoad(categoriesAllKey(), () => loadCategories(db), {
    ...categoryListEntryOptions(),
    consistency,
  });
}

// ---------------------------------------------------------------- writes (inside commitWrite)

/**
 * The change and its condition are one UPDATE (If-Match / If-None-Match in its WHERE, as
 * products, users and inventory do): no locking SELECT before it, one round trip to Postgres
 * less with the row lock held. The current version is read only when it refuses (412).
 */
export async function updateCategory(
  tx: Tx,
  id: number,
  patch: CategoryPatch,
  condition: VersionCondition | null,
): Promise<{ result: CategoryDetail; cache: CacheChange }> {
  const set: Partial<typeof categories.$inferInsert> = {};
  if (patch.name !== undefined) set.name = patch.name;
  if (patch.description !== undefined) set.description = patch.description;
  const [row] = allowsNone(condition)
    ? []
    : await tx
        .update(categories)
        .set({ ...set, version: sql`${categories.version} + 1` })
        .where(and(eq(categories.id, id), versionWhere(categories.version, condition)))
        .returning(columns);
  if (!row) {
    const [current] = await tx
      .select({ version: categories.version })
      .from(categories)
      .where(eq(categories.id, id));
    if (!current) throw new WriteRefused("not_found");
    throw new WriteRefused("version_mismatch", current.version);
  }
  const detail = toDetail(row);
  return { result: detail, cache: categoryWriteChange(id, detail.version) };
}

// ---------------------------------------------------------------- warming

export const categoryWarmable: Warmable<CategoryDetail> = {
  entity: "category",
  parse: (key) => idOfShapedKey(key, "category:", SHAPES.category),
  loadMany: loadCategoriesById,
  key: (id) => categoryKey(id),
  entry: (value) => categoryEntryOptions(value.id),
};
