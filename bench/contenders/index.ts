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

export function contenderById(id: string): ContenderModule {
  const found = CONTENDERS.find((c) => c.id === id);
  if (!found) {
    throw new Error(
      `unknown contender "${id}"; choose from ${CONTENDERS.map((c) => c.id).join(", ")}`,
    );
  }
  return found;
}
