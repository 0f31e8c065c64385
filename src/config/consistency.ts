import { z } from "zod";

/**
 * Where each cached entity's hits are read (`CACHE_CONSISTENCY`): `strict` on the primary (an
 * acknowledged write is seen by every later read), `replica` on the nearest read replica of an
 * Upstash Global database (the writer's own requests see their writes when they carry their
 * sync position; everyone else within the replication lag). Misses, fills and writes always go
 * to the primary. Default: every entity strict.
 */
export type Consistency = "strict" | "replica";

/** The entities whose reads go through the cache (product lists count as products). */
export const CACHED_ENTITIES = ["products", "categories", "users"] as const;
export type CachedEntity = (typeof CACHED_ENTITIES)[number];

export type ConsistencyConfig = Readonly<Record<CachedEntity, Consistency>>;

const MODES: readonly Consistency[] = ["strict", "replica"];
const ALL_STRICT: ConsistencyConfig = { products: "strict", categories: "strict", users: "strict" };

const isEntity = (name: string): name is CachedEntity =>
  (CACHED_ENTITIES as readonly string[]).includes(name);
const isMode = (mode: string): mode is Consistency => (MODES as readonly string[]).includes(mode);

/**
 * Parses `"products=replica,users=strict"` (entities not named stay strict; an empty string is
 * all strict); returns the config or a sentence saying what is wrong.
 *
 * @example
 * parseConsistency("products=replica"); // { products: "replica", categories: "strict", users: "strict" }
 * parseConsistency("product=replica");  // 'names an unknown entity "product" …'
 */
export function parseConsistency(spec: string): ConsistencyConfig | string {
  const config: Record<CachedEntity, Consistency> = { ...ALL_STRICT };
  const seen = new Set<string>();
  for (const part of spec.split(",")) {
    const item = part.trim().toLowerCase();
    if (item === "") continue;
    const m = /^([a-z]+)\s*=\s*([a-z]+)$/.exec(item);
    if (!m?.[1] || !m[2]) {
      return `must be a comma list of entity=strict|replica, e.g. "products=replica" (got "${item}")`;
    }
    const [, entity, mode] = m;
    if (!isEntity(entity)) {
      return `names an unknown entity "${entity}" (known: ${CACHED_ENTITIES.join(", ")})`;
    }
    if (!isMode(mode)) return `gives ${entity} "${mode}"; the modes are strict and replica`;
    if (seen.has(entity)) return `names ${entity} twice`;
    seen.add(entity);
    config[entity] = mode;
  }
  return config;
}

/** A zod field for `CACHE_CONSISTENCY`: the per-entity modes, all strict when unset. */
export function consistencyField() {
  return z
    .string()
    .default("")
    .transform((spec, ctx): ConsistencyConfig => {
      const parsed = parseConsistency(spec);
      if (typeof parsed === "string") {
        ctx.addIssue({ code: "custom", message: parsed });
        return z.NEVER;
      }
      return parsed;
    });
}
