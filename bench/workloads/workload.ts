/** What a workload gets and returns. */
import type { Stage } from "../lib/harness";
import type { BenchParams } from "../lib/params";
import type { WorkloadResult } from "../lib/result";
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
