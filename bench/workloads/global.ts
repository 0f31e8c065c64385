/**
 * HOOK — Global topology workload (issue 7, part 5): hit p50 in `strict` and `replica` mode over
 * a primary (60 ms) and a read replica (5 ms) with 50 ms replication lag, next to a bare GET on
 * the replica. It needs the gateway's replica topology (branch h/gateway-global) and the
 * engine's per-entity consistency mode; neither is on main yet, so this workload reports itself
 * as skipped. To add it: start the gateway with its Global options in harness.ts, give
 * ContenderEnv a replica-routed client, and measure like warm.ts.
 */
import type { Workload } from "./workload";

export const globalTopology: Workload = {
  id: "global",
  title: "Global topology (replica 5 ms, primary 60 ms, lag 50 ms)",
  async run() {
    return {
      id: "global",
      title: "Global topology (replica 5 ms, primary 60 ms, lag 50 ms)",
      setup: "skipped: the gateway's replica topology is not on main yet",
      columns: [],
      rows: [],
      notes: ["not measured yet: hook in bench/workloads/global.ts"],
    };
  },
};
