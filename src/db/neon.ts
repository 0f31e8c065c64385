/**
 * Neon access for the Worker (and for Node tests). Runtime-neutral on purpose:
 * no `ws`, no `pg`, no Node built-ins. Node callers that lack a global
 * WebSocket (Node 20) set `neonConfig.webSocketConstructor` themselves.
 *
 * Production: Neon's defaults (wss://<endpoint>/v2, Postgres TLS disabled
 * because the WebSocket is already TLS, pipelined password auth).
 * Local: `wsProxy` points at tools/neon-ws-proxy, which bridges to a plain
 * TCP Postgres; see configureNeon for what has to change and why.
 */
import { type NeonConfig, neonConfig, Pool } from "@neondatabase/serverless";
import { drizzle, type NeonDatabase } from "drizzle-orm/neon-serverless";
import * as schema from "../../db/schema";
import { type Deadlines, guardPool } from "./guard";

export interface DbConfig {
  databaseUrl: string;
  /**
   * Local mode when set: host[:port][/path] of the WebSocket proxy, e.g.
   * "127.0.0.1:8433/v2". A ws:// or wss:// prefix is accepted and decides
   * useSecureWebSocket; without one the proxy is assumed to be plain ws://.
   */
  wsProxy?: string;
  /**
   * Deadlines for opening a connection and for each statement (ms), and the connect breaker's
   * open interval. Defaults 5000 / 5000 / 0 (off); the Worker passes DB_CONNECT_TIMEOUT_MS,
   * DB_QUERY_TIMEOUT_MS and DB_BREAKER_MS. See src/db/guard.ts and src/db/breaker.ts.
   */
  deadlines?: Partial<Deadlines>;
}

export const DEFAULT_DB_DEADLINES: Deadlines = {
  connectTimeoutMs: 5000,
  queryTimeoutMs: 5000,
  breakerMs: 0,
};

const LOCAL_KEYS = [
  "wsProxy",
  "useSecureWebSocket",
  "pipelineConnect",
  "pipelineTLS",
  "forceDisablePgSSL",
] as const satisfies readonly (keyof NeonConfig)[];
type LocalOverrides = Pick<Partial<NeonConfig>, (typeof LOCAL_KEYS)[number]>;

// What neonConfig.opts held for LOCAL_KEYS before local mode first overrode
// them, so a later call without wsProxy hands back Neon's (or the caller's)
// settings instead of leaving the process stuck talking to the local proxy.
let savedBeforeLocal: LocalOverrides | undefined;

function splitProxy(wsProxy: string): { prefix: string; secure: boolean } {
  const m = /^(wss?):\/\/(.*)$/i.exec(wsProxy.trim());
  const prefix = (m?.[2] ?? wsProxy.trim()).replace(/\/+$/, "");
  if (!prefix) throw new Error("DbConfig.wsProxy is empty: expected e.g. 127.0.0.1:8433/v2");
  return { prefix, secure: m?.[1]?.toLowerCase() === "wss" };
}

/**
 * Applies process-wide driver settings (neonConfig is global in the driver).
 * Without wsProxy nothing is set, except that overrides from an earlier
 * local-mode call are undone.
 */
export function configureNeon(cfg: DbConfig): void {
  if (!cfg.wsProxy) {
    if (savedBeforeLocal) {
      // Keys that were unset come back as undefined, and the driver's getters
      // fall back to its defaults for undefined (`opts.x ?? defaults.x`).
      Object.assign(neonConfig.opts, savedBeforeLocal);
      savedBeforeLocal = undefined;
    }
    return;
  }

  if (!savedBeforeLocal) {
    const opts = neonConfig.opts;
    savedBeforeLocal = {
      wsProxy: opts.wsProxy,
      useSecureWebSocket: opts.useSecureWebSocket,
      pipelineConnect: opts.pipelineConnect,
      pipelineTLS: opts.pipelineTLS,
      forceDisablePgSSL: opts.forceDisablePgSSL,
    };
  }

  const { prefix, secure } = splitProxy(cfg.wsProxy);
  const sep = prefix.includes("?") ? "&" : "?";
  // The driver passes the host/port from the connection string; the proxy
  // opens the TCP connection to exactly that address.
  neonConfig.wsProxy = (host, port) => `${prefix}${sep}address=${host}:${port}`;
  // The local proxy is plain ws:// (no certificate to present).
  neonConfig.useSecureWebSocket = secure;
  // Pipelining sends the cleartext password before Postgres asks for it;
  // that only works against Neon's proxy. Local trust/SCRAM auth would see an
  // unexpected PasswordMessage and abort the connection.
  neonConfig.pipelineConnect = false;
  // Pipelined TLS is Neon-specific too (and we never do Postgres TLS here).
  neonConfig.pipelineTLS = false;
  // The proxy forwards bytes to a plain-TCP Postgres; honouring a copied
  // ?sslmode=require would attempt in-JS TLS (needs subtls) that the local
  // server isn't set up for. This is also Neon's default, set explicitly so
  // local mode never depends on it.
  neonConfig.forceDisablePgSSL = true;
}

export interface Db {
  db: NeonDatabase<typeof schema>;
  pool: Pool;
  /** Ends the pool. Idempotent; in a Worker pass it to ctx.waitUntil(). */
  close(): Promise<void>;
}

/**
 * One pool per request: Workers cannot carry sockets across requests, so a
 * module-level pool would hand later requests dead connections ("Cannot
 * perform I/O on behalf of a different request").
 */
export function createDb(cfg: DbConfig): Db {
  if (!cfg.databaseUrl) throw new Error("DbConfig.databaseUrl is empty: set DATABASE_URL");
  configureNeon(cfg);
  const deadlines = { ...DEFAULT_DB_DEADLINES, ...cfg.deadlines };
  // connectionTimeoutMillis makes the driver tear a stuck socket down; guardPool adds the
  // deadline every caller can rely on, per-statement deadlines, and turns connection failures
  // (including non-Error rejections) into DatabaseUnavailableError.
  const pool = guardPool(
    new Pool({
      connectionString: cfg.databaseUrl,
      connectionTimeoutMillis: deadlines.connectTimeoutMs,
    }),
    deadlines,
    // One circuit per database (and local proxy) in the isolate.
    `${cfg.wsProxy ?? ""} ${cfg.databaseUrl}`,
  );
  let ended: Promise<void> | undefined;
  // An idle client dying (proxy restart, Postgres restart) emits 'error' on
  // the pool; without a listener EventEmitter would throw it at top level.
  // Once the pool is closing, workerd tearing down the request's sockets is
  // expected and not worth a log line.
  pool.on("error", (err: unknown) => {
    if (ended) return;
    const message =
      err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err);
    console.warn(`neon pool: idle client error: ${message}`);
  });
  const db = drizzle({ client: pool, schema });
  return {
    db,
    pool,
    close: () => {
      ended ??= pool.end();
      return ended;
    },
  };
}
