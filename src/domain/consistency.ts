import type { EntryOptions } from "../cache";

/**
 * Where a cached read's hit is served: `strict` on the primary, `replica` on the nearest read
 * replica (see `EntryOptions.consistency`). The domain's read functions take it as a plain
 * argument from their caller (the route, from the validated config); they never read the env.
 * Only hits are placed: misses, fills and writes go to the primary whatever it says, so the
 * entry options shared with the warmer do not carry it.
 */
export type ReadConsistency = NonNullable<EntryOptions<unknown>["consistency"]>;
