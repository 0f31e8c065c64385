/**
 * A copy of `value` that belongs to one request alone (`structuredClone`), so that a request
 * mutating what it was handed (deleting a private field before answering, adding per-user
 * data) cannot change what another request of the isolate reads. Primitives are immutable and
 * returned as they are. A value `structuredClone` refuses (a function inside) is returned as
 * is: shared, as before copies were made.
 *
 * @example
 *   const mine = privateCopy(shared);
 *   delete mine.internalNotes; // `shared` keeps it
 */
export function privateCopy<T>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  try {
    return structuredClone(value);
  } catch {
    return value;
  }
}
