import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import "./test/stack.ts";

/**
 * Two projects, one run: Node-side tests (gateway, proxy, database) and Worker tests that run
 * inside workerd against the same real gateway and Postgres, started once by the global setup.
 */
export default defineConfig({
  test: {
    globalSetup: ["./test/global-setup.ts"],
    projects: [
      {
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          environment: "node",
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        plugins: [
          cloudflareTest(({ inject }) => {
            const stack = inject("stack");
            return {
              main: "./functions/index.ts",
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  UPSTASH_REDIS_REST_URL: stack.gatewayUrl,
                  UPSTASH_REDIS_REST_TOKEN: stack.gatewayToken,
                  DATABASE_URL: stack.databaseUrl,
                  NEON_WS_PROXY: stack.wsProxy,
                  ADMIN_TOKEN: stack.adminToken,
                  TEST_STACK: JSON.stringify(stack),
                  // Generous, so files that write a lot (all as the one header-less "local"
                  // client) never hit a limit; test/workers/rate-limit.test.ts sets tight ones.
                  RATE_LIMIT_WRITES: "100000/60s",
                  RATE_LIMIT_SESSIONS: "100000/60s",
                  // wrangler also reads the developer's .dev.vars: whatever else it sets must not
                  // reach the tests. These are wrangler.toml's values; "" is a deadline's default.
                  CACHE_PREFIX: "ec",
                  CACHE_CONSISTENCY: "",
                  PUBLISH_EVENTS: "0",
                  PURGE_DEAD_LETTER_QUEUE: "edgecache-purge-dlq",
                  RATE_LIMIT_TIMEOUT_MS: "",
                  REDIS_TIMEOUT_MS: "",
                  DB_CONNECT_TIMEOUT_MS: "",
                  DB_QUERY_TIMEOUT_MS: "",
                  LOADER_BACKOFF_MS: "",
                  DB_BREAKER_MS: "",
                  QUEUE_TIMEOUT_MS: "",
                  OUTBOX_RETENTION_HOURS: "",
                  OUTBOX_SWEEP_MINUTES: "",
                },
              },
            };
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
