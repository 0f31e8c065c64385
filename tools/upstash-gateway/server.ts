/**
 * A local stand-in for Upstash's REST API, backed by a real redis-server.
 *
 * It speaks exactly what `@upstash/redis` 1.39 sends with its default options:
 * JSON command arrays on `/`, `/pipeline` and `/multi-exec`, `Upstash-Encoding: base64`,
 * and the `upstash-sync-token` read-your-writes header, plus `subscribe()`/`psubscribe()`
 * as Server-Sent Events (subscribe.ts). See README.md for the wire contract.
 *
 * This module routes a request through the others: request.ts parses it (refusal.ts says
 * what is refused), faults.ts may delay or fail it, emulation.ts plans it, execute.ts runs it
 * on a pool.ts connection and reply.ts encodes the answer; token-state.ts keeps the per-token
 * counters and the control routes, http.ts the HTTP plumbing.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Redis } from "ioredis";
import { Emulation, freshEmulationCounters, type Plan, SyncTimeout } from "./emulation";
import { isReplyError, runBatch, runSingle } from "./execute";
import { injectFault, requestKind } from "./faults";
import { apiRoute, bearerToken, errorText, HttpError, hostForUrl, listen, sendJson } from "./http";
import { ConnectionPool } from "./pool";
import { encodeReply, outcome } from "./reply";
import {
  type Command,
  commandFromPath,
  decodeSegment,
  parseJson,
  readBody,
  toCommand,
  toCommandList,
} from "./request";
import { type StreamKind, type SubscriptionStream, startStream, streamKind } from "./subscribe";
import { countCommand, freshCounters, handleControl, type TokenState } from "./token-state";
import type { GlobalOptions, GlobalTopology } from "./topology";

export interface GatewayOptions {
  /** 0 or undefined = random free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default redis://127.0.0.1:6379. */
  redisUrl?: string;
  /** Bearer token -> Redis DB index. */
  tokens: Record<string, { db: number }>;
  log?: (line: string) => void;
  /** SSE keep-alive comment interval on subscribe streams. Default 15 s. */
  heartbeatMs?: number;
  /** A subscriber this many bytes behind is cut off. Default 32 MiB (Redis's pub/sub limit). */
  maxStreamBacklogBytes?: number;
  /**
   * Fail `#!lua flags=allow-key-locking` scripts that touch a key outside KEYS, as Upstash
   * does. Default true (scripts.ts).
   */
  strictKeys?: boolean;
  /**
   * Audit scripts that are NOT flagged `allow-key-locking`: each key they touch outside KEYS
   * (and each database-wide command) is logged once per run to the redis-server log as
   * `gateway-key-audit <sha> <message>`; nothing fails. Default false.
   */
  auditKeys?: boolean;
  /** A Global topology: `redisUrl` is the primary, this names the replica (topology.ts). */
  global?: GlobalOptions;
}

export interface Gateway {
  url: string;
  port: number;
  /** With `global`: the primary/replica pair, e.g. `topology.setReplicationLag(ms)`. */
  topology?: GlobalTopology;
  close(): Promise<void>;
}

const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
const DEFAULT_HEARTBEAT_MS = 15_000;
/** Redis cuts a pub/sub client off at 32 MB of backlog by default; so does the gateway. */
const MAX_STREAM_BACKLOG_BYTES = 32 * 1024 * 1024;

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? (() => undefined);
  const pool = new ConnectionPool(opts.redisUrl ?? DEFAULT_REDIS_URL, log);
  // --- Upstash emulation (emulation.ts): scripts, routing, sync tokens -----------------------
  const emulation = await Emulation.start({
    strictKeys: opts.strictKeys,
    auditKeys: opts.auditKeys,
    primaryUrl: opts.redisUrl ?? DEFAULT_REDIS_URL,
    global: opts.global,
  });
  const replicaPool = opts.global ? new ConnectionPool(opts.global.replicaUrl, log) : undefined;

  async function enterTarget(plan: Plan, req: IncomingMessage, state: TokenState) {
    try {
      await emulation.enter(plan, req.headers["upstash-sync-token"], state.emulation);
    } catch (error) {
      if (!(error instanceof SyncTimeout)) throw error;
      throw new HttpError(503, error.message, { "retry-after": "1" });
    }
  }

  async function syncHeaders(plan: Plan, primary: Redis, req: IncomingMessage) {
    const token = await emulation.syncToken(plan, primary, req.headers["upstash-sync-token"]);
    return { "upstash-sync-token": token ?? String(++syncToken) };
  }
  /** A stream reads nothing: it keeps the client's position (with a topology) or counts on. */
  function streamSyncToken(req: IncomingMessage): string {
    if (!emulation.topology) return String(++syncToken);
    const sent = req.headers["upstash-sync-token"];
    return (Array.isArray(sent) ? sent[0] : sent) || "0";
  }
  // --- end of Upstash emulation ---------------------------------------------------------------
  const states = new Map<string, TokenState>(
    Object.entries(opts.tokens).map(([token, { db }]) => [
      token,
      { db, faults: null, ...freshCounters(), emulation: freshEmulationCounters() },
    ]),
  );
  // Read-your-writes token: the client echoes whatever we last sent; one Redis means
  // every write is already visible, so a monotonically increasing counter suffices.
  let syncToken = 0;
  // Live subscribe streams, by token state (for stats) and all together (for close()).
  const streams = new Map<SubscriptionStream, TokenState>();
  let streamSeq = 0;

  /**
   * `POST /subscribe/<channel>[/<channel>…]` and `/psubscribe/<pattern>[/…]`: Upstash's path
   * form of SUBSCRIBE, answered as Server-Sent Events on a Redis connection of its own. The
   * client sends a JSON body (`[]`); it means nothing here and is drained unread.
   */
  async function handleStream(
    req: IncomingMessage,
    res: ServerResponse,
    state: TokenState,
    kind: StreamKind,
    segments: string[],
  ) {
    const method = req.method ?? "GET";
    if (method !== "POST" && method !== "GET") {
      throw new HttpError(405, `${method} /${kind} is not supported; use POST`);
    }
    state.requests += 1;
    state.byRoute["/"] += 1;
    req.resume();
    if (state.faults && (await injectFault(res, state.faults, kind.toUpperCase()))) return;
    const names = segments.map(decodeSegment);
    if (names.length === 0 || names.some((n) => n === "")) {
      const what = kind === "subscribe" ? "channel" : "pattern";
      throw new HttpError(400, `${kind} needs a ${what}: POST /${kind}/<${what}>`);
    }
    state.commands += 1;
    countCommand(state, [kind.toUpperCase(), ...names]);
    // Named after this gateway's port, so CLIENT LIST tells whose subscriber it is.
    const name = `upstash-gateway:${port}:${kind}:${++streamSeq}`;
    const redis = await pool.dedicated(state.db, name);
    let stream: SubscriptionStream;
    try {
      stream = await startStream({
        redis,
        res,
        kind,
        names,
        headers: { "upstash-sync-token": streamSyncToken(req) },
        heartbeatMs: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
        maxBufferedBytes: opts.maxStreamBacklogBytes ?? MAX_STREAM_BACKLOG_BYTES,
        log,
      });
    } catch (error) {
      if (isReplyError(error)) throw new HttpError(400, error.message);
      throw pool.unreachable(error);
    }
    state.streamsOpened += 1;
    streams.set(stream, state);
    void stream.closed.then(() => streams.delete(stream));
  }

  function activeStreams(state: TokenState): number {
    let count = 0;
    for (const owner of streams.values()) if (owner === state) count += 1;
    return count;
  }

  async function handleApi(
    req: IncomingMessage,
    res: ServerResponse,
    state: TokenState,
    pathname: string,
  ) {
    const method = req.method ?? "GET";
    const route = apiRoute(pathname);
    // Only the path form (`GET /get/key`) may use GET; JSON bodies need POST.
    if (method !== "POST" && (route || method !== "GET")) {
      throw new HttpError(405, `${method} ${pathname} is not supported; use POST`);
    }
    state.requests += 1;
    state.byRoute[route ?? "/"] += 1;
    const body = await readBody(req);
    const batch = route === "/pipeline" || route === "/multi-exec";
    // Parsed before the fault (its jitter is drawn per kind of request); a body that does not
    // parse is refused after it, as before.
    let commands: Command[] | undefined;
    let refused: unknown;
    try {
      commands = batch
        ? toCommandList(parseJson(body), route)
        : [route ? toCommand(parseJson(body), "Command") : commandFromPath(pathname, method, body)];
    } catch (error) {
      refused = error;
    }
    if (state.faults && (await injectFault(res, state.faults, requestKind(commands)))) return;
    if (!commands) throw refused;

    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    if (base64) state.base64Requests += 1;
    state.commands += commands.length;
    for (const c of commands) countCommand(state, c);
    const atomic = route === "/multi-exec";
    const primary = await pool.get(state.db);
    // Scripts rewritten for Redis 7, and primary or replica (emulation.ts).
    const plan = await emulation.plan(commands, atomic, primary);
    await enterTarget(plan, req, state);
    const onReplica = plan.target === "replica" && replicaPool !== undefined;
    const targetPool = onReplica ? replicaPool : pool;
    const redis = onReplica ? await replicaPool.get(state.db) : primary;
    await emulation.ensureLoaded(plan, redis).catch((error: unknown) => {
      throw targetPool.unreachable(error);
    });
    if (batch) {
      const replies = await runBatch(redis, plan.commands, atomic, targetPool);
      emulation.count(
        plan,
        replies.map(([e]) => e?.message),
        state.emulation,
      );
      const body = replies.map(([e, r], i) => outcome(e, emulation.mapReply(plan, i, r), base64));
      sendJson(res, 200, body, await syncHeaders(plan, primary, req));
      return;
    }
    let reply: unknown;
    try {
      reply = await runSingle(redis, plan.commands[0] as Command, targetPool);
    } catch (error) {
      emulation.count(plan, [errorText(error)], state.emulation);
      throw error;
    }
    emulation.count(plan, [undefined], state.emulation);
    reply = emulation.mapReply(plan, 0, reply);
    sendJson(
      res,
      200,
      { result: encodeReply(reply, base64) },
      await syncHeaders(plan, primary, req),
    );
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const pathname = new URL(req.url ?? "/", "http://gateway").pathname;
    if (pathname === "/__gateway/health") {
      sendJson(res, 200, { ok: true });
      return;
    }
    const token = bearerToken(req);
    const state = token === undefined ? undefined : states.get(token);
    if (!state) {
      const why =
        token === undefined ? "missing Authorization: Bearer <token> header" : "invalid token";
      throw new HttpError(401, `Unauthorized: ${why}`);
    }
    const [first, ...rest] = pathname.split("/").filter(Boolean);
    const kind = streamKind(first);
    if (pathname.startsWith("/__gateway/")) {
      await handleControl(req, res, state, pathname, activeStreams);
    } else if (kind) {
      await handleStream(req, res, state, kind, rest);
    } else {
      await handleApi(req, res, state, pathname);
    }
  }

  const server = createServer((req, res) => {
    const started = Date.now();
    res.on("close", () => {
      const status = res.writableFinished ? String(res.statusCode) : "dropped";
      log(`${req.method} ${req.url} -> ${status} (${Date.now() - started}ms)`);
    });
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent || res.destroyed) return;
      const status = error instanceof HttpError ? error.status : 500;
      const headers = error instanceof HttpError ? error.headers : {};
      sendJson(res, status, { error: errorText(error) }, headers);
    });
  });

  const host = opts.host ?? "127.0.0.1";
  const port = await listen(server, opts.port ?? 0, host).catch(async (error: unknown) => {
    await emulation.close();
    throw error;
  });
  return {
    url: `http://${hostForUrl(host)}:${port}`,
    port,
    topology: emulation.topology,
    close: async () => {
      // End streams first so subscribers see a clean end of stream, not a reset.
      await Promise.all([...streams.keys()].map((s) => s.close("gateway closing")));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Clients keep connections alive; without this close() waits for their timeout.
        server.closeAllConnections();
      });
      await pool.closeAll();
      await replicaPool?.closeAll();
      await emulation.close();
    },
  };
}
