/** The shape every workload returns: one table, printed and written to results JSON. */

export interface Column {
  key: string;
  label: string;
  /** Which way is better; columns with a direction get a ratio to the best peer. */
  better?: "lower" | "higher";
  /** Digits after the point when printed. */
  digits?: number;
}

export interface Row {
  contender: string;
  label: string;
  values: Record<string, number | null>;
  /** Short remark printed after the row (e.g. "DEL not awaited"). */
  note?: string;
  /**
   * "resp" for a contender that reaches Redis over RESP through the latency proxy instead of
   * HTTP through the gateway: same latency per round trip, but far less CPU per request on this
   * one machine, so it is shown but not used as the best peer. "floor" for a reference row
   * that is no cache at all (a bare GET).
   */
  transport?: "gateway" | "resp" | "floor";
}

export interface WorkloadResult {
  id: string;
  title: string;
  /** What was run, in one line (parameters). */
  setup: string;
  columns: Column[];
  rows: Row[];
  notes: string[];
}

/** The contender the ratios are about; every other row is a "peer". */
export const SUBJECT = "edgecache";

/** edgecache, or one of its variants ("edgecache-replica"). */
export function isSubject(contender: string): boolean {
  return contender === SUBJECT || contender.startsWith(`${SUBJECT}-`);
}

/**
 * Best value among the peers (every contender but edgecache that, like it, goes through the
 * Upstash gateway) for a column, or null when no peer has one. Zero is a legitimate best.
 */
export function bestPeer(result: WorkloadResult, column: Column): number | null {
  const values = result.rows
    // Our own variants (edgecache-replica) are not peers either.
    .filter((r) => !isSubject(r.contender) && (r.transport ?? "gateway") === "gateway")
    .map((r) => r.values[column.key])
    .filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (values.length === 0 || !column.better) return null;
  return column.better === "lower" ? Math.min(...values) : Math.max(...values);
}
