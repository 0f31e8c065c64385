/** What a workload gets and returns. */
import type { Stage } from "../lib/harness";
import type { BenchParams } from "../lib/params";
import type { Column, WorkloadResult } from "../lib/result";
import type { ContenderModule } from "../lib/types";

export interface WorkloadContext {
  stage: Stage;
  contenders: readonly ContenderModule[];
  params: BenchParams;
  /** One progress line (overwritten in place on a terminal). */
  progress: (line: string) => void;
}

export interface Workload {
  id: string;
  title: string;
  run(ctx: WorkloadContext): Promise<WorkloadResult>;
}

/**
 * The empty table a workload fills: its id is the workload's (the chart and `--workloads` find
 * results by it), its title the workload's unless the table names its parameters.
 *
 * @example
 *   const result = newResult(warm, { setup: "300 sequential reads", columns: [...] });
 *   result.rows.push({ contender: "edgecache", label: "edgecache", values: { p50: 1.2 } });
 */
export function newResult(
  workload: Pick<Workload, "id" | "title">,
  table: { title?: string; setup: string; columns: Column[]; notes?: string[] },
): WorkloadResult {
  return {
    id: workload.id,
    title: table.title ?? workload.title,
    setup: table.setup,
    columns: table.columns,
    rows: [],
    notes: table.notes ?? [],
  };
}
