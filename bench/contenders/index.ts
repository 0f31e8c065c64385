/** Every contender, in table order. */
import type { ContenderModule } from "../lib/types";
import { bentocache } from "./bentocache";
import { cacheAside } from "./cache-aside";
import { cachified } from "./cachified";
import { edgecache } from "./edgecache";
import { unkey } from "./unkey";
import { versionChecked } from "./version-checked";

export const CONTENDERS: readonly ContenderModule[] = [
  edgecache,
  cacheAside,
  versionChecked,
  unkey,
  cachified,
  bentocache,
];

/**
 * edgecache once more under another id (its own prefix, gateway token and counters; the same
 * code): `--only=edgecache,aa` is an A/A run, which shows the bench's own noise and any effect
 * of the order contenders run in. Not in the default list.
 */
export const aa: ContenderModule = { ...edgecache, id: "aa", label: "edgecache again (A/A)" };

/** Contenders `--only` can name besides the default list. */
export const EXTRA_CONTENDERS: readonly ContenderModule[] = [aa];

const NAMEABLE = [...CONTENDERS, ...EXTRA_CONTENDERS];

export function contenderById(id: string): ContenderModule {
  const found = NAMEABLE.find((c) => c.id === id);
  if (!found) {
    throw new Error(
      `unknown contender "${id}"; choose from ${NAMEABLE.map((c) => c.id).join(", ")}`,
    );
  }
  return found;
}
