import { inject } from "vitest";
import { type Unstable_DevWorker, unstable_dev } from "wrangler";

/**
 * The real Worker (`functions/index.ts`, wrangler's `unstable_dev`, workerd) on the test
 * stack's Postgres, with only the bindings given here plus the stack's database ones: a
 * developer's .dev.vars never leaks into a test. Stop it in `afterAll`.
 *
 * @example
 *   const worker = await startDevWorker({ UPSTASH_REDIS_REST_URL: gateway.url,
 *     UPSTASH_REDIS_REST_TOKEN: token, ADMIN_TOKEN: admin, CACHE_PREFIX: prefix });
 */
export function startDevWorker(vars: Record<string, string>): Promise<Unstable_DevWorker> {
  const stack = inject("stack");
  return unstable_dev("functions/index.ts", {
    config: "wrangler.toml",
    envFiles: [],
    local: true,
    persist: false,
    inspect: false,
    // Errors only: wrangler warns that crons are not triggered locally, which is beside the point.
    logLevel: "error",
    vars: { DATABASE_URL: stack.databaseUrl, NEON_WS_PROXY: stack.wsProxy, ...vars },
  });
}
