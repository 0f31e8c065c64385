/**
 * Shape generations: how a release that changes what a cached value looks like (a field added,
 * renamed or dropped, a type changed) deploys without the other release serving it the wrong
 * shape.
 *
 * A deploy runs two releases side by side (gradual deployments, or the old release's requests,
 * queue batches and cron ticks finishing), both on one Redis and one CACHE_PREFIX. Each
 * entity's cached values live under keys of its shape generation: `product:42` for generation 1
 * (the keys as they always were), `product:42@2` once the product's shape changes. Each release
 * reads, fills, warms and writes through its own generation only, so neither ever serves the
 * other's shape, and only the entities whose shape changed start cold.
 *
 * Invalidation crosses generations because the names that make an entry invalid do not carry
 * one: version keys (`product:42`) and tags (`products`, `category:3`, `categories`) are shared.
 * A write of either release advances the version key and bumps the tags, which invalidates the
 * entries of both; the key deletes in a write's change name only the writer's generation (they
 * free memory, they are not what keeps the other release correct). So every cached value of the
 * catalogue is guarded by a version key or a tag, never by a key delete alone
 * (test/workers/deploy-skew.test.ts). An admin purge by key covers every generation up to the
 * current ones (`keysOfEveryShape`).
 *
 * To change a shape: bump the entity's number here in the release that changes it. Nothing
 * else: no migration, no prefix change (a new CACHE_PREFIX loses the other release's
 * invalidations, README "Deploy").
 */
export const SHAPES = {
  /** GET /products/{id} (ProductDetail, embedding its category). */
  product: 1,
  /** GET /products pages (LoadedProductPage). */
  productList: 1,
  /** GET /categories/{id} (CategoryDetail). */
  category: 1,
  /** GET /categories (CategoryDetail[]). */
  categoryList: 1,
  /** GET /users/{id} (UserJson). */
  user: 1,
} as const;

/**
 * The cache key of `base` under shape `generation`: `base` itself for generation 1, so the
 * entries cached before generations existed stay generation 1's; `base@n` from generation 2 on
 * (`@` is a valid key character, and a purge pattern `product:*` still matches every
 * generation).
 *
 * @example
 *   shaped("product:42", 1); // "product:42"
 *   shaped("product:42", 2); // "product:42@2"
 */
export function shaped(base: string, generation: number): string {
  if (!Number.isInteger(generation) || generation < 1) {
    throw new RangeError(`a shape generation is an integer from 1, got ${generation}`);
  }
  return generation === 1 ? base : `${base}@${generation}`;
}

/**
 * The id in a key of `prefix` ("product:") under shape `generation`, or null: the warmer maps a
 * hot key back to its entity this way, and warms only its own generation's keys (a hot key of
 * the other release's generation is that release's to warm).
 *
 * @example
 *   idOfShapedKey("product:42@2", "product:", 2); // 42
 *   idOfShapedKey("product:42", "product:", 2);   // null (generation 1's key)
 */
export function idOfShapedKey(key: string, prefix: string, generation: number): number | null {
  const suffix = generation === 1 ? "" : `@${generation}`;
  if (!key.startsWith(prefix) || !key.endsWith(suffix)) return null;
  const digits = key.slice(prefix.length, key.length - suffix.length);
  if (!/^[1-9]\d{0,9}$/.test(digits)) return null;
  const id = Number(digits);
  return id <= MAX_ID ? id : null;
}

const MAX_ID = 2_147_483_647;

/** The highest generation in SHAPES: how many keys an admin purge takes per key it is given. */
export function highestShape(): number {
  return Math.max(...Object.values(SHAPES));
}

/**
 * `key` under every generation from 1 to `highest` (the highest one in SHAPES): what an admin
 * purge by key deletes, as the caller names the key without its generation (and the release
 * before may still serve an older one).
 *
 * @example
 *   keysOfEveryShape(["product:42"]);    // ["product:42"] while every generation is 1
 *   keysOfEveryShape(["product:42"], 3); // ["product:42", "product:42@2", "product:42@3"]
 */
export function keysOfEveryShape(
  keys: readonly string[],
  highest: number = highestShape(),
): string[] {
  const out: string[] = [];
  for (const key of keys) {
    out.push(key);
    for (let generation = 2; generation <= highest; generation++) {
      out.push(shaped(key, generation));
    }
  }
  return out;
}
