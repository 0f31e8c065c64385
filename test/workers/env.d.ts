import type { Env as WorkerEnv } from "../../src/config/env";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      /** JSON of test/stack.ts's TestStack, bound by vitest.config.ts for tests only. */
      TEST_STACK: string;
    }
  }
}

declare global {
  /**
   * `getQueueResult` (cloudflare:test) returns this type, which workers-types declares only in
   * its experimental entry point; the stable types we compile against need it spelled out.
   */
  interface FetcherQueueResult {
    outcome: string;
    ackAll: boolean;
    retryBatch: { retry: boolean; delaySeconds?: number };
    explicitAcks: string[];
    retryMessages: { msgId: string; delaySeconds?: number }[];
  }
}
