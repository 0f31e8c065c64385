import { and, eq, inArray, sql } from "drizzle-orm";
import { type User, users } from "../../db/schema";
import type { CacheResult, EntryOptions } from "../cache";
import type { Db, Services } from "../runtime/services";
import { allowsNone, type VersionCondition, versionWhere } from "./conditions";
import type { ReadConsistency } from "./consistency";
import type { CacheChange } from "./events";
import { NOT_FOUND_TTL_MS } from "./products";
import { idOfShapedKey, SHAPES, shaped } from "./shapes";
import type { Warmable } from "./warmable";
import { commitWrite, type Delivery } from "./write";

/**
 * Users: read-through with write-through on update.
 * A user is read far more often than written and a write knows the whole new row (RETURNING),
 * so the PATCH stores the new value itself instead of deleting the entry: the next read is a
 * HIT, not a miss storm. The write is a versioned CAS in Redis, so a slower, older write (or a
 * fill that loaded an older row) can never replace a newer one.
 */

/** The tiers the seed and the product use; `tier` is free text in SQL, so this is the gate. */
export const USER_TIERS = ["standard", "premium", "enterprise"] as const;
export type UserTier = (typeof USER_TIERS)[number];

/** What the API returns and the cache stores (dates as ISO strings, so both are identical). */
export interface UserJson {
  id: number;
  email: string;
  name: string;
  tier: string;
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface UserPatch {
  name?: string;
  email?: string;
  tier?: UserTier;
}

const USER_TTL_MS = 10 * 60_000;
const USER_STALE_MS = 60_000;

/** Cache key of a user, under its shape generation (src/domain/shapes.ts). */
export const userKey = (id: number, generation: number = SHAPES.user) =>
  shaped(`user:${id}`, generation);
/** Version key of a user: its key without a generation, shared by every release (shapes.ts). */
export const userVersionKey = (id: number) => `user:${id}`;

/** Entry options shared by the read path, the write-through and the warmer. */
export function userEntry(id: number): EntryOptions<UserJson> {
  return {
    ttl: USER_TTL_MS,
    staleTtl: USER_STALE_MS,
    // Kept past the grace window (1 h) and served only while Postgres fails, like products.
    failSafe: true,
    versionKey: userVersionKey(id),
    versionOf: (user) => user.version,
  };
}

export function toUserJson(row: User): UserJson {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    tier: row.tier,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

async function loadUser(db: Db, id: number): Promise<UserJson | null> {
  const [row] = await db.select().from(users).where(eq(users.id, id)).limit(1);
  return row ? toUserJson(row) : null;
}

/**
 * The cached user, or a result whose value is null when no such user exists: a negative entry
 * for NOT_FOUND_TTL_MS, stored under the version the key had when the load began, so the next
 * version advance (a write-through, an outbox event) ends it.
 */
export function getUser(
  services: Services,
  id: number,
  consistency: ReadConsistency = "strict",
): Promise<CacheResult<UserJson | null>> {
  return services.cache.getOrLoad<UserJson | null>(userKey(id), () => loadUser(services.db, id), {
    // The engine never calls versionOf with null (a negative entry takes the captured version).
    ...(userEntry(id) as EntryOptions<UserJson | null>),
    negativeTtl: NOT_FOUND_TTL_MS,
    consistency,
  });
}

export type UserUpdate =
  | { ok: true; user: UserJson; delivery: Delivery }
  | { ok: false; reason: "not_found" }
  | { ok: false; reason: "version_mismatch"; currentVersion: number }
  | { ok: false; reason: "email_taken"; email: string };

type Refused = Exclude<UserUpdate, { ok: true }>;

/** Thrown inside the transaction so it rolls back (and no outbox row is written). */
class Refusal extends Error {
  constructor(readonly outcome: Refused) {
    super(outcome.reason);
  }
}

/** Postgres unique_violation, wherever drizzle or the driver put it in the cause chain. */
function isUniqueViolation(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Object; depth++) {
    if ("code" in current && current.code === "23505") return true;
    current = "cause" in current ? current.cause : undefined;
  }
  return false;
}

/**
 * Applies `patch` and bumps the version in one UPDATE. `condition` (If-Match, If-None-Match)
 * makes it conditional inside the same statement, so no other write can slip in between the
 * check and the change; null means unconditional.
 */
export async function updateUser(
  services: Services,
  id: number,
  patch: UserPatch,
  condition: VersionCondition | null,
): Promise<UserUpdate> {
  const key = userKey(id);
  try {
    const { result, delivery } = await commitWrite<UserJson>(services, {
      origin: "users.patch",
      async change(tx) {
        let row: User | undefined;
        if (!allowsNone(condition)) {
          try {
            [row] = await tx
              .update(users)
              .set({
                ...patch,
                version: sql`${users.version} + 1`,
                updatedAt: sql`now()`,
              })
              .where(and(eq(users.id, id), versionWhere(users.version, condition)))
              .returning();
          } catch (error) {
            if (patch.email !== undefined && isUniqueViolation(error)) {
              throw new Refusal({ ok: false, reason: "email_taken", email: patch.email });
            }
            throw error;
          }
        }
        if (!row) {
          const [current] = await tx
            .select({ version: users.version })
            .from(users)
            .where(eq(users.id, id));
          throw new Refusal(
            current
              ? { ok: false, reason: "version_mismatch", currentVersion: current.version }
              : { ok: false, reason: "not_found" },
          );
        }
        const user = toUserJson(row);
        // The queue / cron fallback cannot write through; it deletes and advances the version.
        const cache: CacheChange = {
          keys: [key],
          versions: { [userVersionKey(id)]: user.version },
        };
        return { result: user, cache };
      },
      apply: (cache, user) => cache.writeThrough(key, user, user.version, userEntry(id)),
    });
    return { ok: true, user: result, delivery };
  } catch (error) {
    if (error instanceof Refusal) return error.outcome;
    throw error;
  }
}

/** Lets the cron warmer reload hot users in one query, with the read path's entry options. */
export const userWarmable: Warmable<UserJson> = {
  entity: "user",
  parse: (key) => idOfShapedKey(key, "user:", SHAPES.user),
  async loadMany(db, ids) {
    if (ids.length === 0) return new Map();
    const rows = await db
      .select()
      .from(users)
      .where(inArray(users.id, [...ids]));
    return new Map(rows.map((row) => [row.id, toUserJson(row)]));
  },
  key: (id) => userKey(id),
  entry: (user) => userEntry(user.id),
};
