import { categoryWarmable } from "./categories";
import { productWarmable } from "./products";
import { userWarmable } from "./users";
import type { Warmable } from "./warmable";

/**
 * Forgets a warmable's value type so warmables of different entities fit in one list.
 * Sound because the warmer only ever passes a warmable values returned by its own `loadMany`;
 * without it, `EntryOptions<T>`'s callbacks (`versionOf`, `tagsOf`) make `Warmable<Product>`
 * unassignable to `Warmable<unknown>`.
 */
export function anyWarmable<T>(warmable: Warmable<T>): Warmable<unknown> {
  return warmable as unknown as Warmable<unknown>;
}

/**
 * Every entity the cron warmer and POST /admin/warm may reload, in the order their `parse` is
 * tried (the first that accepts a key owns it). Lists are not warmed: a page is cheap to
 * rebuild and its key space (cursor × limit) is unbounded.
 */
export const warmables: readonly Warmable<unknown>[] = [
  anyWarmable(productWarmable),
  anyWarmable(categoryWarmable),
  anyWarmable(userWarmable),
];
