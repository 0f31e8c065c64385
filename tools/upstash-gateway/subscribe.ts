/**
 * Upstash's pub/sub over HTTP: `POST /subscribe/<channel>` and `POST /psubscribe/<pattern>`
 * answer with a Server-Sent Events stream that stays open, one `data:` line per Redis push:
 *
 *   data: subscribe,<channel>,<count>
 *   data: message,<channel>,<payload>
 *   data: psubscribe,<pattern>,<count>
 *   data: pmessage,<pattern>,<channel>,<payload>
 *
 * The payload is the raw text (never base64, whatever `Upstash-Encoding` says): that is what
 * `@upstash/redis`'s Subscriber parses, slicing at the first two (three for pmessage) commas,
 * so payloads may contain commas and JSON. Each stream owns a dedicated Redis connection in
 * subscriber mode, closed as soon as the client goes away.
 */
import type { ServerResponse } from "node:http";
import type { Redis } from "ioredis";

export type StreamKind = "subscribe" | "psubscribe";

/** The path segments of a stream route name a kind: `/subscribe/a/b`, `/PSUBSCRIBE/p*`. */
export function streamKind(firstSegment: string | undefined): StreamKind | undefined {
  const name = firstSegment?.toLowerCase();
  return name === "subscribe" || name === "psubscribe" ? name : undefined;
}

/**
 * One SSE event. A payload with line breaks is sent as several `data:` lines (the SSE rule,
 * which an EventSource joins back with "\n"); @upstash/redis reads line by line and cannot
 * rebuild those, so publishers that want its subscribers should not put raw newlines in
 * messages (JSON.stringify never does).
 *
 * @example sseEvent(["message", "ec:events", '{"keys":["a,b"]}'])
 * // 'data: message,ec:events,{"keys":["a,b"]}\n\n'
 */
export function sseEvent(fields: readonly string[]): string {
  const lines = fields.join(",").split(/\r\n|\r|\n/);
  return `${lines.map((line) => `data: ${line}`).join("\n")}\n\n`;
}

export interface StreamOptions {
  /** A connected Redis connection of the stream's own; the stream closes it. */
  redis: Redis;
  res: ServerResponse;
  kind: StreamKind;
  /** Channels (subscribe) or glob patterns (psubscribe), at least one. */
  names: readonly string[];
  /** Extra response headers (the sync token). */
  headers: Record<string, string>;
  /** SSE comment interval: lets a quiet stream notice a vanished client. */
  heartbeatMs: number;
  /** A client this far behind (bytes queued in the gateway) is cut off, like Redis does. */
  maxBufferedBytes: number;
  log: (line: string) => void;
}

/** A running stream: `closed` resolves once its Redis connection has been let go. */
export interface SubscriptionStream {
  readonly closed: Promise<void>;
  /** Ends the response and closes the Redis connection (gateway shutdown). */
  close(reason: string): Promise<void>;
}

/**
 * Subscribes `redis` and, once Redis confirmed, answers 200 with the SSE stream. Messages that
 * arrive between the confirmation and the response head are queued, not lost. Rejects (and
 * closes `redis`) if SUBSCRIBE fails; the caller answers with an error status then.
 */
export async function startStream(opts: StreamOptions): Promise<SubscriptionStream> {
  const { redis, res, kind, log } = opts;
  const queued: string[] = [];
  let open = false;
  let finished = false;
  let heartbeat: NodeJS.Timeout | undefined;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve;
  });

  const finish = async (reason: string) => {
    if (finished) return closed;
    finished = true;
    clearInterval(heartbeat);
    redis.removeAllListeners("message");
    redis.removeAllListeners("pmessage");
    log(`${kind} ${opts.names.join(" ")}: stream closed (${reason})`);
    if (!res.writableEnded) res.end();
    // QUIT is polite; a dead link has nothing to say goodbye to.
    await redis.quit().catch(() => redis.disconnect());
    markClosed();
    return closed;
  };

  const send = (chunk: string) => {
    if (finished) return;
    if (!open) {
      queued.push(chunk);
      return;
    }
    res.write(chunk);
    if (res.writableLength > opts.maxBufferedBytes) {
      void finish(`client too slow: over ${opts.maxBufferedBytes} bytes waiting`);
    }
  };

  redis.on("message", (channel: string, message: string) => {
    send(sseEvent(["message", channel, message]));
  });
  redis.on("pmessage", (pattern: string, channel: string, message: string) => {
    send(sseEvent(["pmessage", pattern, channel, message]));
  });
  // The client hanging up (abort, unsubscribe, crash) and Redis dropping the link both end it.
  res.on("close", () => void finish("client went away"));
  redis.once("end", () => void finish("Redis connection ended"));

  const names = [...new Set(opts.names)];
  try {
    if (kind === "subscribe") await redis.subscribe(...names);
    else await redis.psubscribe(...names);
  } catch (error) {
    await finish("subscribe failed");
    throw error;
  }
  if (finished) return { closed, close: finish };

  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    ...opts.headers,
  });
  // A fresh connection counts its subscriptions from 1, one confirmation per distinct name.
  const confirmations = names.map((name, i) => sseEvent([kind, name, String(i + 1)]));
  res.write(confirmations.join(""));
  open = true;
  for (const chunk of queued.splice(0)) send(chunk);
  heartbeat = setInterval(() => {
    if (!finished) res.write(": keep-alive\n\n");
  }, opts.heartbeatMs);
  heartbeat.unref();
  return { closed, close: finish };
}
