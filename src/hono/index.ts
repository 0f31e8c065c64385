/**
 * `edgecache/hono`: Hono helpers that answer a route's JSON through the engine
 * (`edgecache/cache`) with X-Cache, ETag and 304 handling. Depends only on hono and the engine.
 */
export type { AnyContext } from "./context";
export { type EdgeCacheVariables, edgeCache, engineOf, waitUntilOf } from "./middleware";
export {
  type Audience,
  type CachedJsonOptions,
  cacheControlFor,
  cachedJson,
  digest,
  etagFor,
  etagOf,
  matchesEtag,
  matchesStrongly,
  setCacheHeaders,
  type Validator,
} from "./response";
export { type CacheJsonOptions, cacheJson } from "./route";
