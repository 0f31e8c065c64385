/**
 * Runs the Upstash REST gateway from environment variables:
 *   GATEWAY_PORT (8079), GATEWAY_HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379),
 *   GATEWAY_TOKENS ("token:db,token:db", default "local-dev-token:0"),
 *   GATEWAY_VERBOSE=1 to log every request.
 *
 *   npx tsx tools/upstash-gateway/cli.ts
 */
import { type GatewayOptions, startGateway } from "./server";

function parseTokens(spec: string): GatewayOptions["tokens"] {
  const tokens: GatewayOptions["tokens"] = {};
  const entries = spec.split(",").map((e) => e.trim());
  for (const entry of entries.filter(Boolean)) {
    // Split on the last colon so a token may itself contain colons.
    const at = entry.lastIndexOf(":");
    const token = entry.slice(0, at);
    const db = Number(entry.slice(at + 1));
    if (at <= 0 || !Number.isInteger(db) || db < 0) {
      throw new Error(`GATEWAY_TOKENS entry "${entry}" must look like token:db (db a number)`);
    }
    tokens[token] = { db };
  }
  if (Object.keys(tokens).length === 0) throw new Error("GATEWAY_TOKENS lists no tokens");
  return tokens;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`GATEWAY_PORT "${value}" is not a valid port`);
  }
  return port;
}

async function main(): Promise<void> {
  const env = process.env;
  const redisUrl = env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const tokens = parseTokens(env.GATEWAY_TOKENS ?? "local-dev-token:0");
  const verbose = env.GATEWAY_VERBOSE === "1";
  const gateway = await startGateway({
    port: parsePort(env.GATEWAY_PORT ?? "8079"),
    host: env.GATEWAY_HOST ?? "127.0.0.1",
    redisUrl,
    tokens,
    log: verbose ? (line) => console.error(`[gateway] ${line}`) : undefined,
  });
  const dbs = Object.values(tokens)
    .map((t) => t.db)
    .join(",");
  console.log(`Upstash REST gateway listening on ${gateway.url} -> ${redisUrl} (db ${dbs})`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second Ctrl-C means "now": don't wait for keep-alive clients or Redis QUIT.
    if (stopping) process.exit(130);
    stopping = true;
    console.error(`[gateway] ${signal}: shutting down`);
    gateway.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`[gateway] shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((error: unknown) => {
  console.error(`[gateway] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
