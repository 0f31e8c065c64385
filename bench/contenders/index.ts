/** Every contender, in table order. */

import { REVISION_ID } from "../lib/revision";
import type { ContenderModule } from "../lib/types";
import { bentocache } from "./bentocache";
import { cacheAside } from "./cache-aside";
import { cachified } from "./cachified";
import { edgecache, edgecacheAt } from "./edgecache";
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

/**
 * The contender named `id`: one of the lists above, or `edgecache@<sha>`, the engine of a commit
 * that bench/lib/revision.ts extracted (`--against`).
 */
export function contenderById(id: string): ContenderModule {
  const revision = REVISION_ID.exec(id)?.[1];
  if (revision) return edgecacheAt(revision);
  const found = NAMEABLE.find((c) => c.id === id);
  if (!found) {
    throw new Error(
      `unknown contender "${id}"; choose from ${NAMEABLE.map((c) => c.id).join(", ")}`,
    );
  }
  return found;
}
