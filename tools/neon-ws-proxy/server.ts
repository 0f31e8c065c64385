/**
 * Local stand-in for Neon's WebSocket endpoint: lets @neondatabase/serverless
 * (which only speaks Postgres-over-WebSocket) reach a plain TCP Postgres.
 *
 * Protocol, as the driver uses it (see neonConfig.wsProxy): the driver opens
 * `ws://<wsProxy>?address=<host>:<port>` and then sends/receives the raw
 * Postgres wire protocol as binary WebSocket messages. There is no framing of
 * our own: each WebSocket message is written to the TCP socket verbatim, and
 * each TCP chunk becomes one binary message. Postgres TLS is not involved
 * (the driver is configured with forceDisablePgSSL), so the bytes are plain.
 *
 * Dev/test tool only: no TLS, no auth. It therefore refuses targets outside an
 * allow-list and WebSocket upgrades from non-local browser origins, so it can
 * be neither an open TCP relay nor reachable from a random web page.
 */
import { createServer, type IncomingMessage, STATUS_CODES } from "node:http";
import { type Socket, connect as tcpConnect } from "node:net";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";

export interface WsProxyOptions {
  /** 0 or undefined = random free port. */
  port?: number;
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** "host:port" targets clients may reach. Default ["127.0.0.1:5432", "localhost:5432"]. */
  allowedTargets?: string[];
  log?: (line: string) => void;
}

export interface WsProxy {
  /** Value for neonConfig.wsProxy (no scheme), e.g. "127.0.0.1:8433/v2". */
  url: string;
  port: number;
  /** Bridged connections not yet fully closed on both sides. */
  connections(): number;
  close(): Promise<void>;
}

export const DEFAULT_ALLOWED_TARGETS = ["127.0.0.1:5432", "localhost:5432"];

// Pause reading Postgres once this much is queued towards a slow WebSocket
// client, resume below the low mark. Big enough not to throttle normal result
// sets, small enough that a stalled client can't balloon proxy memory.
const HIGH_WATER_MARK = 1024 * 1024;
const LOW_WATER_MARK = 256 * 1024;
const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
// Half-closed upstream sockets are force-closed after this, so a Postgres that
// never answers our FIN can't pin a connection slot forever.
const UPSTREAM_END_GRACE_MS = 5_000;
// Detects clients that vanished without a close frame (laptop sleep, killed
// workerd). Browsers, ws and workerd all answer pings automatically.
const HEARTBEAT_INTERVAL_MS = 30_000;
// Max WebSocket close-reason length in bytes (RFC 6455: 125 minus the code).
const MAX_CLOSE_REASON_BYTES = 123;

interface Target {
  host: string;
  port: number;
  /** Normalised "host:port" ("[v6]:port" for IPv6) used for allow-list checks. */
  key: string;
}

/** Parses "host:port", "[v6]:port" or bare "v6:port" (split at the last colon). */
export function parseTarget(value: string): Target | undefined {
  const trimmed = value.trim();
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(trimmed);
  if (bracketed?.[1] && bracketed[2]) {
    host = bracketed[1];
    portText = bracketed[2];
  } else {
    const idx = trimmed.lastIndexOf(":");
    if (idx <= 0) return undefined;
    host = trimmed.slice(0, idx);
    portText = trimmed.slice(idx + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535 || !host || /[\s/?#@]/.test(host)) return undefined;
  host = host.toLowerCase();
  const key = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, key };
}

function clientLabel(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? "?";
  return `${addr}:${req.socket.remotePort ?? "?"}`;
}

/**
 * Browsers always send Origin; non-browser clients (ws, workerd, undici)
 * normally don't. Allowing only absent or loopback origins blocks
 * cross-site WebSocket hijacking of a trust-auth local Postgres.
 */
function originAllowed(origin: string | undefined): boolean {
  if (origin === undefined) return true;
  // "null" is what sandboxed iframes and file:// pages send: not trustworthy.
  if (origin === "null") return false;
  try {
    const { hostname } = new URL(origin);
    return hostname === "localhost" || hostname === "127.0.0.1" || hostname === "[::1]";
  } catch {
    return false;
  }
}

function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${message}\n`;
  socket.once("finish", () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n` +
      "Connection: close\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Ws-Proxy-Error: ${message.replace(/[^\x20-\x7e]/g, "?")}\r\n` +
      "\r\n" +
      body,
  );
}

function closeReason(text: string): string {
  let out = text;
  while (Buffer.byteLength(out) > MAX_CLOSE_REASON_BYTES) out = out.slice(0, -1);
  return out;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function errorCode(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? err.message;
}

function displayHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

export async function startWsProxy(opts: WsProxyOptions = {}): Promise<WsProxy> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.log ?? (() => undefined);
  const allowedList = opts.allowedTargets ?? DEFAULT_ALLOWED_TARGETS;
  const allowed = new Set<string>();
  for (const entry of allowedList) {
    const target = parseTarget(entry);
    if (!target) throw new Error(`ws-proxy: allowed target "${entry}" is not host:port`);
    allowed.add(target.key);
  }
  const allowedText = [...allowed].join(", ");

  const wss = new WebSocketServer({
    noServer: true,
    // Postgres messages are already compact binary and latency matters more.
    perMessageDeflate: false,
    // ws defaults to 100 MiB; 64 MiB still fits any bulk INSERT or COPY chunk
    // the driver coalesces into one frame while capping per-message memory.
    maxPayload: 64 * 1024 * 1024,
  });

  let nextId = 1;
  let closing = false;
  const bridges = new Set<{ ws: WebSocket; tcp: Socket }>();
  // Upgrades waiting for their upstream TCP connect; closed on shutdown.
  const pending = new Set<{ client: Duplex; tcp: Socket }>();

  function bridge(ws: WebSocket, tcp: Socket, id: number, target: Target, from: string): void {
    const entry = { ws, tcp };
    bridges.add(entry);
    const started = Date.now();
    let bytesUp = 0;
    let bytesDown = 0;
    let wsClosed = false;
    let tcpClosed = false;
    let alive = true;

    const finish = () => {
      if (!wsClosed || !tcpClosed) return;
      if (!bridges.delete(entry)) return;
      log(
        `#${id} closed ${from} -> ${target.key} after ${Date.now() - started} ms (${bytesUp} B up, ${bytesDown} B down)`,
      );
    };

    // Client -> Postgres. Pausing the WebSocket stops reading its TCP socket,
    // so a slow Postgres pushes back on the client instead of buffering here.
    ws.on("message", (data: RawData) => {
      if (!tcp.writable) return;
      const chunk = toBuffer(data);
      bytesUp += chunk.length;
      if (!tcp.write(chunk) && !ws.isPaused) {
        ws.pause();
        tcp.once("drain", () => ws.resume());
      }
    });

    // Postgres -> client. ws.send never blocks, so watch bufferedAmount and
    // stop reading Postgres while the client is behind.
    tcp.on("data", (chunk: Buffer) => {
      bytesDown += chunk.length;
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(chunk, { binary: true }, () => {
        if (tcp.isPaused() && ws.bufferedAmount < LOW_WATER_MARK) tcp.resume();
      });
      if (ws.bufferedAmount > HIGH_WATER_MARK) tcp.pause();
    });

    ws.on("pong", () => {
      alive = true;
    });
    const heartbeat = setInterval(() => {
      if (!alive) {
        log(`#${id} client stopped answering pings; dropping`);
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();

    ws.on("close", (code: number) => {
      wsClosed = true;
      clearInterval(heartbeat);
      if (code !== 1000 && code !== 1005) log(`#${id} client closed with code ${code}`);
      // Graceful half-close first: the driver normally sent Terminate ('X')
      // just before, and Postgres closes its side on seeing EOF.
      if (!tcp.destroyed) {
        tcp.end();
        setTimeout(() => tcp.destroy(), UPSTREAM_END_GRACE_MS).unref();
      }
      finish();
    });
    ws.on("error", (err: Error) => {
      log(`#${id} websocket error: ${err.message}`);
      tcp.destroy();
    });

    tcp.on("end", () => {
      // Postgres hung up (backend exit, admin shutdown): mirror it to the client.
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "postgres closed the connection");
    });
    tcp.on("error", (err: Error) => {
      log(`#${id} upstream error: ${errorCode(err)}`);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        ws.close(1011, closeReason(`upstream ${target.key} error: ${errorCode(err)}`));
      }
    });
    tcp.on("close", () => {
      tcpClosed = true;
      // A 'drain' that will never come must not leave the client unread, or
      // its close frame would sit in the socket until ws' 30 s timeout.
      if (ws.isPaused) ws.resume();
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "postgres closed the connection");
      // If the client never completes the closing handshake, ws times out
      // after 30 s and emits 'close' anyway, so finish() always runs.
      finish();
    });

    log(`#${id} open ${from} -> ${target.key}`);
  }

  function checkUpgrade(req: IncomingMessage): Target | { status: number; message: string } {
    if (closing) return { status: 503, message: "ws-proxy is shutting down" };
    if (!originAllowed(req.headers.origin)) {
      return {
        status: 403,
        message: `origin ${req.headers.origin ?? "null"} is not allowed: only non-browser clients and localhost pages may use this dev proxy`,
      };
    }
    const url = new URL(req.url ?? "/", "http://ws-proxy.invalid");
    const address = url.searchParams.get("address");
    if (!address) {
      return {
        status: 400,
        message:
          "missing ?address=host:port: set neonConfig.wsProxy so the driver appends it (see tools/neon-ws-proxy/README.md)",
      };
    }
    const target = parseTarget(address);
    if (!target)
      return { status: 400, message: `invalid address "${address}": expected host:port` };
    if (!allowed.has(target.key)) {
      return {
        status: 403,
        message: `target ${target.key} is not allowed (allowed: ${allowedText}); add it to WS_PROXY_ALLOWED / allowedTargets`,
      };
    }
    return target;
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const id = nextId++;
    const from = clientLabel(req);
    // Errors on the raw socket before ws takes over would otherwise crash the
    // process with an unhandled 'error'.
    socket.on("error", () => socket.destroy());

    const reject = (status: number, message: string) => {
      log(`#${id} rejected ${from}: ${status} ${message}`);
      rejectUpgrade(socket, status, message);
    };

    const checked = checkUpgrade(req);
    if ("status" in checked) {
      reject(checked.status, checked.message);
      return;
    }
    const target = checked;

    // Connect upstream before accepting the WebSocket, so an unreachable
    // Postgres shows up as a failed handshake (502/504 with the reason)
    // instead of a socket that opens and immediately dies.
    const tcp = tcpConnect({ host: target.host, port: target.port });
    const attempt = { client: socket, tcp };
    pending.add(attempt);
    tcp.setTimeout(UPSTREAM_CONNECT_TIMEOUT_MS);

    const onClientGone = () => {
      pending.delete(attempt);
      tcp.destroy();
    };
    socket.once("close", onClientGone);

    const cleanup = () => {
      pending.delete(attempt);
      socket.off("close", onClientGone);
      tcp.off("error", onConnectError);
      tcp.off("timeout", onConnectTimeout);
      tcp.setTimeout(0);
    };
    const onConnectError = (err: Error) => {
      cleanup();
      reject(502, `cannot reach Postgres at ${target.key}: ${errorCode(err)}`);
    };
    const onConnectTimeout = () => {
      cleanup();
      tcp.destroy();
      reject(504, `timed out connecting to Postgres at ${target.key}`);
    };
    tcp.once("error", onConnectError);
    tcp.once("timeout", onConnectTimeout);
    tcp.once("connect", () => {
      cleanup();
      if (closing || socket.destroyed) {
        tcp.destroy();
        if (!socket.destroyed) reject(503, "ws-proxy is shutting down");
        return;
      }
      // Postgres messages are small and latency-bound; Nagle would add delay.
      tcp.setNoDelay(true);
      tcp.setKeepAlive(true, 30_000);
      wss.handleUpgrade(req, socket, head, (ws) => bridge(ws, tcp, id, target, from));
    });
  }

  const server = createServer((_req, res) => {
    // Plain HTTP hits (curl, health checks) get an explanation, not a hang.
    res.writeHead(426, { "Content-Type": "text/plain; charset=utf-8", Upgrade: "websocket" });
    res.end(
      "edgecache neon-ws-proxy: connect with a WebSocket client to /v2?address=host:port (see tools/neon-ws-proxy/README.md)\n",
    );
  });
  server.on("upgrade", handleUpgrade);
  server.on("clientError", (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new Error(
          err.code === "EADDRINUSE"
            ? `ws-proxy: ${host}:${opts.port} is already in use: stop the other process or pick another port (WS_PROXY_PORT)`
            : `ws-proxy: cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`,
          { cause: err },
        ),
      );
    };
    server.once("error", onError);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", onError);
      resolve();
    });
  });

  const addr = server.address();
  if (addr === null || typeof addr === "string")
    throw new Error("ws-proxy: server has no TCP address");
  const port = addr.port;
  const url = `${displayHost(host)}:${port}/v2`;
  log(`ws-proxy listening on ws://${url} (targets: ${allowedText})`);

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    connections: () => bridges.size,
    close: () => {
      closed ??= (async () => {
        closing = true;
        for (const { client, tcp } of pending) {
          tcp.destroy();
          client.destroy();
        }
        pending.clear();
        for (const { ws, tcp } of bridges) {
          ws.terminate();
          tcp.destroy();
        }
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        bridges.clear();
        log("ws-proxy closed");
      })();
      return closed;
    },
  };
}
