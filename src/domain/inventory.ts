import { and, eq, gte, isNull, sql } from "drizzle-orm";
import { products } from "../../db/schema";
import type { Services } from "../runtime/services";
import { allows, type VersionCondition, versionWhere } from "./conditions";
import type { CacheChange } from "./events";
import { productKey, productVersionKey } from "./products";
import { commitWrite, type Delivery } from "./write";

/**
 * Inventory: stock reservations straight against Postgres, never against the cache.
 * The conditional UPDATE (`stock >= q`) is the whole concurrency control: Postgres re-checks
 * it on the newest row version after waiting for the row lock, so concurrent reservations can
 * never oversell, and the CHECK (stock >= 0) backs it up. The cached product is then
 * invalidated and its version advanced in one Redis request (not written through: this module
 * does not own the product's cached shape), so a fill that loaded the old stock can never land.
 */

export const MAX_RESERVATION = 1000;

export type Reservation =
  | {
      ok: true;
      productId: number;
      reserved: number;
      remaining: number;
      version: number;
      categoryId: number;
      delivery: Delivery;
    }
  | { ok: false; reason: "not_found" }
  | { ok: false; reason: "version_mismatch"; current: number }
  | { ok: false; reason: "insufficient_stock"; available: number; requested: number };

type Refused = Exclude<Reservation, { ok: true }>;

/** Thrown inside the transaction so it rolls back (and no outbox row is written). */
class Refusal extends Error {
  constructor(readonly outcome: Refused) {
    super(outcome.reason);
  }
}

/**
 * Reserves `quantity` of a product. `condition` is the request's If-Match / If-None-Match: the
 * versions the reservation may apply to (null: any). A product at another version refuses it
 * as `version_mismatch`, whatever its stock: the client reserved against a state it has not
 * seen.
 *
 * @example
 * // only while the product is at v7:
 * const outcome = await reserveStock(services, 42, 2, { only: [7], not: [] });
 */
export async function reserveStock(
  services: Services,
  productId: number,
  quantity: number,
  condition: VersionCondition | null = null,
): Promise<Reservation> {
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_RESERVATION) {
    throw new RangeError(`quantity must be an integer in 1..${MAX_RESERVATION}`);
  }
  const key = productKey(productId);
  try {
    const { result, delivery } = await commitWrite(services, {
      origin: "inventory.reserve",
      async change(tx) {
        const live = and(eq(products.id, productId), isNull(products.deletedAt));
        const expected = versionWhere(products.version, condition);
        const [row] = await tx
          .update(products)
          .set({
            stock: sql`${products.stock} - ${quantity}`,
            version: sql`${products.version} + 1`,
            updatedAt: sql`now()`,
          })
          .where(and(live, expected, gte(products.stock, quantity)))
          .returning({
            id: products.id,
            stock: products.stock,
            version: products.version,
            categoryId: products.categoryId,
          });
        if (!row) {
          // Same transaction, so the answer describes the state that refused the UPDATE.
          const [current] = await tx
            .select({ stock: products.stock, version: products.version })
            .from(products)
            .where(live);
          throw new Refusal(
            !current
              ? { ok: false, reason: "not_found" }
              : !allows(condition, current.version)
                ? { ok: false, reason: "version_mismatch", current: current.version }
                : {
                    ok: false,
                    reason: "insufficient_stock",
                    available: current.stock,
                    requested: quantity,
                  },
          );
        }
        const cache: CacheChange = {
          keys: [key],
          versions: { [productVersionKey(productId)]: row.version },
        };
        return { result: row, cache };
      },
    });
    return {
      ok: true,
      productId: result.id,
      reserved: quantity,
      remaining: result.stock,
      version: result.version,
      categoryId: result.categoryId,
      delivery,
    };
  } catch (error) {
    if (error instanceof Refusal) return error.outcome;
    throw error;
  }
}
