import { and, type Column, inArray, notInArray, type SQL, sql } from "drizzle-orm";

/**
 * A write's precondition on the version of the row it changes, from the request's `If-Match`
 * and `If-None-Match` (RFC 9110 §13.1.1–13.1.2), checked in the same transaction as the write
 * (the row locked, or in the UPDATE's own WHERE), so no other write slips in between.
 *
 * - `only`: the versions `If-Match` named; null when it was absent or `*` (any existing row).
 *   Empty: nothing we issued was named, or `If-None-Match: *` ("only if it does not exist",
 *   which no write of an existing row can satisfy): never allowed.
 * - `not`: the versions `If-None-Match` named (weak comparison): the write must not apply to
 *   any of them.
 *
 * `null` instead of a condition: no precondition at all.
 *
 * @example
 *   allows({ only: [7], not: [] }, 7); // true
 *   allows({ only: null, not: [7] }, 7); // false: If-None-Match named the current version
 */
export interface VersionCondition {
  readonly only: readonly number[] | null;
  readonly not: readonly number[];
}

/** Whether a row at `version` may be written under `condition`. */
export function allows(condition: VersionCondition | null, version: number): boolean {
  if (!condition) return true;
  if (condition.only && !condition.only.includes(version)) return false;
  return !condition.not.includes(version);
}

/** Whether no row at all can satisfy `condition` (the write need not even be tried). */
export function allowsNone(condition: VersionCondition | null): boolean {
  return condition?.only?.length === 0;
}

/**
 * `condition` as a WHERE clause on `column` (undefined: no clause), for a conditional UPDATE.
 *
 * @example
 *   tx.update(users).set(patch).where(and(eq(users.id, id), versionWhere(users.version, cond)));
 */
export function versionWhere(column: Column, condition: VersionCondition | null): SQL | undefined {
  if (!condition) return undefined;
  if (allowsNone(condition)) return sql`false`;
  return and(
    condition.only ? inArray(column, [...condition.only]) : undefined,
    condition.not.length > 0 ? notInArray(column, [...condition.not]) : undefined,
  );
}
