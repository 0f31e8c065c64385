/**
 *   npx tsx tools/neon-ws-proxy/cli.ts
 *
 * Env: WS_PROXY_PORT (default 8433), WS_PROXY_HOST (default 127.0.0.1),
 * WS_PROXY_ALLOWED (comma-separated host:port list, default
 * 127.0.0.1:5432,localhost:5432), WS_PROXY_QUIET=1 to log only errors.
 */

import { onLauncherGone } from "../lib/launcher";
import { DEFAULT_ALLOWED_TARGETS, startWsProxy } from "./server";

function parsePort(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 8433;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`WS_PROXY_PORT must be an integer 0-65535 (got "${raw}")`);
  }
  return port;
}

function parseAllowed(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === "") return DEFAULT_ALLOWED_TARGETS;
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

async function main(): Promise<void> {
  const quiet = process.env.WS_PROXY_QUIET === "1";
  const stamp = () => new Date().toISOString();
  const proxy = await startWsProxy({
    port: parsePort(process.env.WS_PROXY_PORT),
    host: process.env.WS_PROXY_HOST || "127.0.0.1",
    allowedTargets: parseAllowed(process.env.WS_PROXY_ALLOWED),
    log: (line) => {
      if (!quiet || /error|rejected/.test(line)) console.log(`${stamp()} ${line}`);
    },
  });
  console.log(`neon-ws-proxy ready: ws://${proxy.url}`);
  // The Worker reads NEON_WS_PROXY (src/config/env.ts) and hands it to configureNeon.
  console.log(`  set NEON_WS_PROXY=${proxy.url} in .dev.vars next to a local DATABASE_URL`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second Ctrl-C while connections drain means "now".
    if (stopping) process.exit(130);
    stopping = true;
    console.log(`${signal}: closing ${proxy.connections()} connection(s)`);
    proxy.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // npm stopped with SIGTERM does not pass it on (tools/lib/launcher.ts).
  onLauncherGone(() => stop("SIGTERM"));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
