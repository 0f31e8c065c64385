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

/** edgecache, or one of its variants ("edgecache-replica", "edgecache@<sha>" of `--against`). */
export function isSubject(contender: string): boolean {
  return (
    contender === SUBJECT ||
    contender.startsWith(`${SUBJECT}-`) ||
    contender.startsWith(`${SUBJECT}@`)
  );
}

/**
 * Today's engine against another revision's (`--against`), workload by workload: every column
 * with a direction, as today's value over the other's (below 1 is better for "lower" columns,
 * above 1 for "higher"). Workloads where either is missing are left out.
 *
 * @example
 *   abRatios(report.results, "edgecache@3546c95a1b");
 *   // [{ workload: "warm", column: "p50 ms", ours: 6.61, theirs: 6.70, ratio: 0.987, better: "lower" }, …]
 */
export function abRatios(
  results: readonly WorkloadResult[],
  other: string,
): {
  workload: string;
  column: string;
  ours: number;
  theirs: number;
  ratio: number;
  better: "lower" | "higher";
}[] {
  const out = [];
  for (const result of results) {
    const ours = result.rows.find((r) => r.contender === SUBJECT);
    const theirs = result.rows.find((r) => r.contender === other);
    if (!ours || !theirs) continue;
    for (const column of result.columns) {
      const a = ours.values[column.key];
      const b = theirs.values[column.key];
      if (!column.better || typeof a !== "number" || typeof b !== "number" || b === 0) continue;
      out.push({
        workload: result.id,
        column: column.label,
        ours: a,
        theirs: b,
        ratio: a / b,
        better: column.better,
      });
    }
  }
  return out;
}

/** A peer for ratios: another cache than edgecache, through the Upstash gateway like it. */
export function isPeer(c: { id: string; viaGateway: boolean }): boolean {
  return !isSubject(c.id) && c.viaGateway;
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
