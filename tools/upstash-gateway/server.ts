/**
 * A local stand-in for Upstash's REST API, backed by a real redis-server.
 *
 * It speaks exactly what `@upstash/redis` 1.39 sends with its default options:
 * JSON command arrays on `/`, `/pipeline` and `/multi-exec`, `Upstash-Encoding: base64`,
 * and the `upstash-sync-token` read-your-writes header, plus `subscribe()`/`psubscribe()`
 * as Server-Sent Events (subscribe.ts). See README.md for the wire contract.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { prng } from "../../db/prng";
import {
  Emulation,
  type EmulationCounters,
  freshEmulationCounters,
  type Plan,
  SyncTimeout,
} from "./emulation";
import { type StreamKind, type SubscriptionStream, startStream, streamKind } from "./subscribe";
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

type ApiRoute = "/" | "/pipeline" | "/multi-exec";
type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type Command = [name: string, ...args: string[]];

interface Faults {
  latencyMs: number;
  jitterMs: number;
  failRate: number;
  failMode: "status" | "drop";
  failStatus: number;
  /** Remaining forced failures; undefined = use failRate instead. */
  failCount?: number;
  /**
   * Jitter drawn from sequences seeded with this (mulberry32) instead of Math.random, one
   * sequence per kind of request (`requestKind`): two tokens given the same seed see the same
   * delays, the n-th request of a kind on one waiting what the n-th of that kind waits on the
   * other (common random numbers: a benchmark comparing them is not comparing two draws of the
   * noise). Per kind, so that requests one client sends and the other does not (a background
   * stats flush) do not shift every later draw of the first onto other requests of the other.
   */
  jitterSeed?: number;
  /** The seeded sequences' generators by kind (not part of the JSON view). */
  jitterStreams?: Map<string, () => number>;
}

interface TokenState {
  db: number;
  requests: number;
  commands: number;
  byRoute: Record<ApiRoute, number>;
  /** Commands served, by name (EVALSHA, PUBLISH…): lets tests see what a request carried. */
  byCommand: Record<string, number>;
  /** Subscribe/psubscribe streams opened since the last reset. */
  streamsOpened: number;
  /**
   * Requests that asked for base64-encoded replies (`Upstash-Encoding: base64`, the client's
   * default): each reply string costs an encode here and a decode in the client.
   */
  base64Requests: number;
  faults: Faults | null;
  /** Scripts by lock, calls by kind, requests by server, sync waits (emulation.ts). */
  emulation: EmulationCounters;
}

const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
const MAX_BODY_BYTES = 32 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 2000;
const API_ROUTES: readonly ApiRoute[] = ["/", "/pipeline", "/multi-exec"];
const DEFAULT_HEARTBEAT_MS = 15_000;
/** Redis cuts a pub/sub client off at 32 MB of backlog by default; so does the gateway. */
const MAX_STREAM_BACKLOG_BYTES = 32 * 1024 * 1024;

/** An error that already knows which HTTP status it deserves. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------
// Command policy
// ---------------------------------------------------------------------------

const STREAM_ONLY =
  "subscribe through the streaming route POST /subscribe/<channel> (Server-Sent Events)";
const PSTREAM_ONLY =
  "subscribe through the streaming route POST /psubscribe/<pattern> (Server-Sent Events)";

/**
 * Every request shares one connection per DB, so anything that blocks it or changes its
 * state would leak into other callers. Upstash refuses most of these too.
 */
const REFUSED: Record<string, string> = {
  SUBSCRIBE: STREAM_ONLY,
  PSUBSCRIBE: PSTREAM_ONLY,
  SSUBSCRIBE: "sharded pub/sub is not served (Upstash neither)",
  UNSUBSCRIBE: "to unsubscribe, close the subscribe stream",
  PUNSUBSCRIBE: "to unsubscribe, close the psubscribe stream",
  SUNSUBSCRIBE: "sharded pub/sub is not served (Upstash neither)",
  MONITOR: "MONITOR would take over the shared connection",
  BLPOP: "blocking commands would stall the shared connection",
  BRPOP: "blocking commands would stall the shared connection",
  BRPOPLPUSH: "blocking commands would stall the shared connection",
  BLMOVE: "blocking commands would stall the shared connection",
  BLMPOP: "blocking commands would stall the shared connection",
  BZPOPMIN: "blocking commands would stall the shared connection",
  BZPOPMAX: "blocking commands would stall the shared connection",
  BZMPOP: "blocking commands would stall the shared connection",
  WAIT: "blocking commands would stall the shared connection",
  WAITAOF: "blocking commands would stall the shared connection",
  SELECT: "the database is chosen by the bearer token",
  SWAPDB: "the database is chosen by the bearer token",
  MOVE: "the database is chosen by the bearer token",
  MULTI: "use POST /multi-exec for transactions",
  EXEC: "use POST /multi-exec for transactions",
  DISCARD: "use POST /multi-exec for transactions",
  WATCH: "WATCH state would leak between callers of the shared connection",
  UNWATCH: "WATCH state would leak between callers of the shared connection",
  QUIT: "connection-state commands are not allowed",
  RESET: "connection-state commands are not allowed",
  HELLO: "connection-state commands are not allowed",
  AUTH: "connection-state commands are not allowed",
};

const REFUSED_CLIENT_SUBCOMMANDS = new Set(["REPLY", "TRACKING", "CACHING", "PAUSE"]);

function refusalReason(command: Command): string | undefined {
  const [name, ...args] = command;
  const reason = REFUSED[name];
  if (reason) return reason;
  const first = args[0]?.toUpperCase();
  if (name === "CLIENT" && first && REFUSED_CLIENT_SUBCOMMANDS.has(first)) {
    return "connection-state commands are not allowed";
  }
  const isStreamRead = name === "XREAD" || name === "XREADGROUP";
  if (isStreamRead && args.some((a) => a.toUpperCase() === "BLOCK")) {
    return "blocking commands would stall the shared connection";
  }
  return undefined;
}

/**
 * An Upstash database is a single keyspace, so FLUSHALL there means "this database".
 * Here all tokens share one server; a literal FLUSHALL would wipe other tokens' DBs.
 */
function scopeToDatabase(command: Command): Command {
  const [name, ...args] = command;
  return name === "FLUSHALL" ? ["FLUSHDB", ...args] : command;
}

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

function toArgument(value: unknown, position: number): string {
  // The client's serializer passes numbers and booleans through as raw JSON.
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const kind = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  throw new HttpError(400, `Command argument ${position} must be a string or number, got ${kind}`);
}

function toCommand(value: unknown, label: string): Command {
  if (!Array.isArray(value)) {
    throw new HttpError(400, `${label} must be a JSON array like ["SET","key","value"]`);
  }
  if (value.length === 0) throw new HttpError(400, `${label} is empty`);
  const [name, ...args] = value.map((v: unknown, i) => toArgument(v, i));
  if (!name) throw new HttpError(400, `${label} has an empty command name`);
  // Upper-casing also sidesteps ioredis's reply transformers (e.g. HGETALL -> object),
  // which are keyed by lower-case name and would change the wire shape.
  const command: Command = [name.toUpperCase(), ...args];
  const reason = refusalReason(command);
  if (reason)
    throw new HttpError(400, `${label}: ${command[0]} is not supported by the gateway (${reason})`);
  return scopeToDatabase(command);
}

function toCommandList(value: unknown, route: ApiRoute): Command[] {
  if (!Array.isArray(value) || !value.every(Array.isArray)) {
    throw new HttpError(400, `${route} expects a JSON array of command arrays like [["GET","k"]]`);
  }
  if (value.length === 0) throw new HttpError(400, `${route} needs at least one command`);
  return value.map((c: unknown, i) => toCommand(c, `Command ${i + 1}`));
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `Request body is not valid JSON: ${errorText(error)}`);
  }
}

/** Upstash's path form: `GET /get/key`, or `POST /set/key` with the value as the raw body. */
function commandFromPath(pathname: string, method: string, body: Buffer): Command {
  const segments = pathname.split("/").filter(Boolean).map(decodeSegment);
  if (method === "POST" && body.length > 0) segments.push(body.toString("utf8"));
  return toCommand(segments, "Command");
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `Malformed percent-encoding in path segment "${segment}"`);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `Request body exceeds ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

// ---------------------------------------------------------------------------
// Reply encoding
// ---------------------------------------------------------------------------

/**
 * Mirrors the client's `decode()`: a top-level "OK" is kept verbatim (the client never
 * base64-decodes it), while every other string - including "OK" nested in an array,
 * which the client *would* decode - must be base64.
 */
function encodeReply(reply: unknown, base64: boolean, topLevel = true): Json {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "number") return reply;
  if (typeof reply === "bigint") return reply.toString();
  if (Array.isArray(reply)) return reply.map((r: unknown) => encodeReply(r, base64, false));
  const bytes = toBytes(reply);
  if (!base64) return bytes.toString("utf8");
  if (topLevel && bytes.length === 2 && bytes.toString("latin1") === "OK") return "OK";
  return bytes.toString("base64");
}

function toBytes(reply: unknown): Buffer {
  if (Buffer.isBuffer(reply)) return reply;
  // Errors nested in arrays (e.g. a Lua table holding a pcall failure) travel as their text.
  if (reply instanceof Error) return Buffer.from(reply.message, "utf8");
  return Buffer.from(String(reply), "utf8");
}

// ---------------------------------------------------------------------------
// Redis connections (one per DB index, created on first use)
// ---------------------------------------------------------------------------

class RedisUnreachable extends HttpError {
  constructor(url: string, reason: string) {
    super(500, `Redis at ${url} is unreachable: ${reason}; start redis-server or set REDIS_URL`);
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return url;
  }
}

function isReplyError(error: unknown): error is Error {
  return error instanceof Error && error.name === "ReplyError";
}

class ConnectionPool {
  private readonly connections = new Map<number, Promise<Redis>>();
  private readonly safeUrl: string;
  private closed = false;

  constructor(
    private readonly redisUrl: string,
    private readonly log: (line: string) => void,
  ) {
    this.safeUrl = redactUrl(redisUrl);
  }

  async get(db: number): Promise<Redis> {
    if (this.closed) throw new HttpError(503, "Gateway is shutting down");
    const current = this.connections.get(db);
    if (!current) return this.open(db);
    const redis = await current.catch(() => undefined);
    if (redis?.status === "ready") return redis;
    // The link died (retryStrategy is off, so it stays dead): replace it exactly once,
    // even when several requests notice at the same time.
    if (this.connections.get(db) === current) {
      redis?.disconnect();
      this.connections.delete(db);
    }
    return this.get(db);
  }

  /**
   * A connection of its own, outside the pool (a subscriber owns its link): named so
   * `CLIENT LIST` shows what it is. The caller closes it.
   */
  async dedicated(db: number, name: string): Promise<Redis> {
    if (this.closed) throw new HttpError(503, "Gateway is shutting down");
    return this.connect(db, name);
  }

  /** Any non-Redis failure while a command is in flight means the link itself broke. */
  unreachable(error: unknown): RedisUnreachable {
    return new RedisUnreachable(this.safeUrl, errorText(error));
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((p) => p.then((r) => r.quit()).catch(() => undefined)));
  }

  private open(db: number): Promise<Redis> {
    const pending = this.connect(db);
    this.connections.set(db, pending);
    pending.catch(() => {
      if (this.connections.get(db) === pending) this.connections.delete(db);
    });
    return pending;
  }

  private async connect(db: number, connectionName?: string): Promise<Redis> {
    let lastError = "";
    // Fail fast instead of queueing: a test waiting on a dead Redis should get a 500
    // in milliseconds, not hang. A dropped link is replaced on the next request.
    const redis = new Redis(this.redisUrl, {
      db,
      connectionName,
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    redis.on("error", (error: Error) => {
      lastError = error.message;
      this.log(`redis db=${db}: ${error.message}`);
    });
    try {
      await redis.connect();
      return redis;
    } catch (error) {
      redis.disconnect();
      throw new RedisUnreachable(this.safeUrl, lastError || errorText(error));
    }
  }
}

// ---------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------

type Outcome = { result: Json } | { error: string };

function outcome(error: Error | null, reply: unknown, base64: boolean): Outcome {
  return error ? { error: error.message } : { result: encodeReply(reply, base64) };
}

async function runSingle(redis: Redis, command: Command, pool: ConnectionPool): Promise<unknown> {
  const [name, ...args] = command;
  try {
    return await redis.callBuffer(name, ...args);
  } catch (error) {
    if (isReplyError(error)) throw new HttpError(400, error.message);
    throw pool.unreachable(error);
  }
}

async function runBatch(
  redis: Redis,
  commands: Command[],
  atomic: boolean,
  pool: ConnectionPool,
): Promise<[Error | null, unknown][]> {
  const only = commands.length === 1 ? commands[0] : undefined;
  if (only && !atomic) {
    // @upstash/redis auto-pipelines, so nearly every request is a /pipeline of one command: an
    // ioredis Pipeline for it costs more CPU than the command (Pipeline object, exec, promise
    // bookkeeping). The reply is the same [error, result] a pipeline would give.
    const [name, ...args] = only;
    try {
      return [[null, await redis.callBuffer(name, ...args)]];
    } catch (error) {
      if (isReplyError(error)) return [[error, null]];
      throw pool.unreachable(error);
    }
  }
  const batch = atomic ? redis.multi() : redis.pipeline();
  for (const [name, ...args] of commands) batch.callBuffer(name, ...args);
  let replies: [Error | null, unknown][] | null;
  try {
    replies = await batch.exec();
  } catch (error) {
    // EXECABORT: a command failed to queue, so nothing ran. Surface Redis's reasons.
    if (isReplyError(error)) throw new HttpError(400, execAbortText(error));
    throw pool.unreachable(error);
  }
  if (!replies) throw new HttpError(400, "Transaction aborted by Redis");
  const broken = replies.find(([error]) => error && !isReplyError(error));
  if (broken) throw pool.unreachable(broken[0]);
  return replies;
}

function execAbortText(error: Error): string {
  const previous: unknown = Reflect.get(error, "previousErrors");
  if (!Array.isArray(previous) || previous.length === 0) return error.message;
  const reasons = previous.map((e: unknown) => errorText(e)).join("; ");
  return `${error.message} ${reasons}`;
}

// ---------------------------------------------------------------------------
// Per-token state and faults
// ---------------------------------------------------------------------------

function freshCounters(): Pick<
  TokenState,
  "requests" | "commands" | "byRoute" | "byCommand" | "streamsOpened" | "base64Requests"
> {
  return {
    requests: 0,
    commands: 0,
    byRoute: { "/": 0, "/pipeline": 0, "/multi-exec": 0 },
    byCommand: {},
    streamsOpened: 0,
    base64Requests: 0,
  };
}

function countCommand(state: TokenState, command: Command): void {
  const name = String(command[0] ?? "").toUpperCase();
  state.byCommand[name] = (state.byCommand[name] ?? 0) + 1;
}

const FAULT_KEYS = new Set([
  "latencyMs",
  "jitterMs",
  "failRate",
  "failMode",
  "failStatus",
  "failCount",
  "jitterSeed",
]);

function numberField(input: Record<string, unknown>, key: string, max: number, integer: boolean) {
  const value = input[key];
  if (value === undefined) return undefined;
  const valid = typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= max;
  if (!valid || (integer && !Number.isInteger(value))) {
    const kind = integer ? "an integer" : "a number";
    throw new HttpError(400, `faults.${key} must be ${kind} between 0 and ${max}`);
  }
  return value;
}

function parseFaults(value: unknown): Faults {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "faults body must be a JSON object");
  }
  const input = value as Record<string, unknown>;
  const unknownKey = Object.keys(input).find((k) => !FAULT_KEYS.has(k));
  if (unknownKey) throw new HttpError(400, `Unknown fault option "${unknownKey}"`);
  const failMode = input.failMode ?? "status";
  if (failMode !== "status" && failMode !== "drop") {
    throw new HttpError(400, `faults.failMode must be "status" or "drop"`);
  }
  const failStatus = numberField(input, "failStatus", 599, true) ?? 503;
  if (failStatus < 400) throw new HttpError(400, "faults.failStatus must be between 400 and 599");
  return {
    latencyMs: numberField(input, "latencyMs", 60_000, false) ?? 0,
    jitterMs: numberField(input, "jitterMs", 60_000, false) ?? 0,
    failRate: numberField(input, "failRate", 1, false) ?? 0,
    failMode,
    failStatus,
    failCount: numberField(input, "failCount", Number.MAX_SAFE_INTEGER, true),
    ...seededJitter(numberField(input, "jitterSeed", 0xffffffff, true)),
  };
}

function seededJitter(seed: number | undefined): Pick<Faults, "jitterSeed" | "jitterStreams"> {
  return seed === undefined ? {} : { jitterSeed: seed, jitterStreams: new Map() };
}

const MAX_JITTER_KINDS = 256;

/** A draw in [0, 1) for a request of `kind`: from its seeded sequence, else Math.random. */
function jitterDraw(faults: Faults, kind: string): number {
  const streams = faults.jitterStreams;
  if (faults.jitterSeed === undefined || !streams) return Math.random();
  // Bounded: past MAX_JITTER_KINDS distinct kinds (random script SHAs, say), the rest share one.
  const stream = streams.has(kind) || streams.size < MAX_JITTER_KINDS ? kind : "*";
  let next = streams.get(stream);
  if (!next) {
    next = prng(faults.jitterSeed);
    streams.set(stream, next);
  }
  return next();
}

/**
 * What the seeded jitter is drawn per (see Faults.jitterSeed): the first command's name, and
 * for EVALSHA* the script's SHA (a cache's hit script and its stats flush are different kinds);
 * "?" for a body that does not parse (it is refused after its delay).
 */
function requestKind(commands: Command[] | undefined): string {
  const first = commands?.[0];
  if (!first) return "?";
  const [name, sha] = first;
  return name.startsWith("EVALSHA") ? `${name} ${sha ?? ""}` : name;
}

/** failCount, when set, is deterministic and overrides failRate; it then stops failing. */
function shouldFail(faults: Faults): boolean {
  if (faults.failCount !== undefined) {
    if (faults.failCount === 0) return false;
    faults.failCount -= 1;
    return true;
  }
  return faults.failRate > 0 && Math.random() < faults.failRate;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

function sendJson(
  res: ServerResponse,
  status: number,
  body: Json,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return match?.[1];
}

function apiRoute(pathname: string): ApiRoute | undefined {
  return API_ROUTES.find((r) => r === pathname);
}

function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

// ---------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------

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

  /** Returns true when the request was consumed by a fault. */
  async function injectFault(res: ServerResponse, faults: Faults, kind: string): Promise<boolean> {
    const delay = faults.latencyMs + jitterDraw(faults, kind) * faults.jitterMs;
    if (delay > 0) await sleep(delay);
    if (!shouldFail(faults)) return false;
    if (faults.failMode === "drop") {
      res.socket?.destroy();
      return true;
    }
    const message = `Injected fault: gateway answered HTTP ${faults.failStatus} on purpose`;
    sendJson(res, faults.failStatus, { error: message });
    return true;
  }

  async function handleControl(
    req: IncomingMessage,
    res: ServerResponse,
    state: TokenState,
    pathname: string,
  ) {
    const key = `${req.method ?? "GET"} ${pathname}`;
    if (key === "GET /__gateway/stats") {
      const { requests, commands, byRoute, byCommand, streamsOpened, base64Requests } = state;
      sendJson(res, 200, {
        requests,
        commands,
        base64Requests,
        byRoute: { ...byRoute },
        byCommand: { ...byCommand },
        streams: { active: activeStreams(state), opened: streamsOpened },
        ...(JSON.parse(JSON.stringify(state.emulation)) as { [key: string]: Json }),
      });
    } else if (key === "POST /__gateway/reset") {
      Object.assign(state, freshCounters(), { faults: null, emulation: freshEmulationCounters() });
      sendJson(res, 200, { ok: true });
    } else if (key === "POST /__gateway/faults") {
      state.faults = parseFaults(parseJson(await readBody(req)));
      sendJson(res, 200, { ok: true, faults: faultsJson(state.faults) });
    } else if (key === "GET /__gateway/faults") {
      sendJson(res, 200, { faults: state.faults ? faultsJson(state.faults) : null });
    } else if (key === "DELETE /__gateway/faults") {
      state.faults = null;
      sendJson(res, 200, { ok: true });
    } else {
      throw new HttpError(404, `No control route ${key}`);
    }
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
    if (pathname.startsWith("/__gateway/")) await handleControl(req, res, state, pathname);
    else if (kind) await handleStream(req, res, state, kind, rest);
    else await handleApi(req, res, state, pathname);
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

function faultsJson(faults: Faults): Json {
  const { failCount, jitterStreams: _generators, jitterSeed, ...rest } = faults;
  return {
    ...rest,
    ...(failCount === undefined ? {} : { failCount }),
    ...(jitterSeed === undefined ? {} : { jitterSeed }),
  };
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
