/**
 * Runs the Upstash REST gateway from environment variables:
 *   GATEWAY_PORT (8079), GATEWAY_HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379),
 *   GATEWAY_TOKENS ("token:db,token:db", default "local-dev-token:0"),
 *   GATEWAY_VERBOSE=1 to log every request,
 *   GATEWAY_STRICT_KEYS=0 to stop checking that allow-key-locking scripts declare their keys.
 * Global topology (README.md, "Global topology"): GATEWAY_REPLICA_URL (REDIS_URL is then the
 *   primary) or GATEWAY_SPAWN_GLOBAL=1 (start a throwaway primary and replica redis-server),
 *   GATEWAY_REPLICATION_LAG_MS, GATEWAY_PRIMARY_LATENCY_MS, GATEWAY_REPLICA_LATENCY_MS,
 *   GATEWAY_SYNC_TIMEOUT_MS.
 *
 *   npx tsx tools/upstash-gateway/cli.ts
 */

import { onLauncherGone } from "../lib/launcher";
import { type OwnRedis, startOwnRedis } from "../lib/own-redis";
import { type GatewayOptions, startGateway } from "./server";
import type { GlobalOptions } from "./topology";

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

function parseMs(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0 || ms > 600_000) {
    throw new Error(`${name} "${value}" must be a number of milliseconds between 0 and 600000`);
  }
  return ms;
}

function globalOptions(replicaUrl: string): GlobalOptions {
  return {
    replicaUrl,
    replicationLagMs: parseMs("GATEWAY_REPLICATION_LAG_MS", 0),
    primaryLatencyMs: parseMs("GATEWAY_PRIMARY_LATENCY_MS", 0),
    replicaLatencyMs: parseMs("GATEWAY_REPLICA_LATENCY_MS", 0),
    syncTimeoutMs: parseMs("GATEWAY_SYNC_TIMEOUT_MS", 5000),
  };
}

async function main(): Promise<void> {
  const env = process.env;
  const spawned: OwnRedis[] = [];
  let redisUrl = env.REDIS_URL ?? "redis://127.0.0.1:6379";
  let replicaUrl = env.GATEWAY_REPLICA_URL || undefined;
  if (env.GATEWAY_SPAWN_GLOBAL === "1") {
    console.error("[gateway] starting a primary and a replica redis-server...");
    spawned.push(await startOwnRedis(), await startOwnRedis());
    redisUrl = spawned[0]?.url ?? redisUrl;
    replicaUrl = spawned[1]?.url;
  }
  const stopSpawned = () => Promise.all(spawned.map((s) => s.stop().catch(() => undefined)));
  const tokens = parseTokens(env.GATEWAY_TOKENS ?? "local-dev-token:0");
  const verbose = env.GATEWAY_VERBOSE === "1";
  const gateway = await startGateway({
    port: parsePort(env.GATEWAY_PORT ?? "8079"),
    host: env.GATEWAY_HOST ?? "127.0.0.1",
    redisUrl,
    tokens,
    log: verbose ? (line) => console.error(`[gateway] ${line}`) : undefined,
    strictKeys: env.GATEWAY_STRICT_KEYS !== "0",
    global: replicaUrl ? globalOptions(replicaUrl) : undefined,
  }).catch(async (error: unknown) => {
    await stopSpawned();
    throw error;
  });
  const dbs = Object.values(tokens)
    .map((t) => t.db)
    .join(",");
  console.log(`Upstash REST gateway listening on ${gateway.url} -> ${redisUrl} (db ${dbs})`);
  if (replicaUrl) {
    const g = globalOptions(replicaUrl);
    console.log(
      `Global topology: reads -> replica ${replicaUrl} (+${g.replicaLatencyMs} ms), writes -> primary (+${g.primaryLatencyMs} ms), replication lag ${g.replicationLagMs} ms`,
    );
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second Ctrl-C means "now": don't wait for keep-alive clients or Redis QUIT.
    if (stopping) process.exit(130);
    stopping = true;
    console.error(`[gateway] ${signal}: shutting down`);
    gateway.close().then(
      () => stopSpawned().then(() => process.exit(0)),
      (error: unknown) => {
        console.error(`[gateway] shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // npm stopped with SIGTERM does not pass it on (tools/lib/launcher.ts).
  onLauncherGone(() => stop("SIGTERM"));
}

main().catch((error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  console.error(
    code === "EADDRINUSE"
      ? `[gateway] ${message}: stop the other process (ss -ltnp or lsof -i shows it) or pick another port (GATEWAY_PORT)`
      : `[gateway] ${message}`,
  );
  process.exit(1);
});
