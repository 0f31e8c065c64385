import { Redis } from "@upstash/redis/cloudflare";

export interface RedisConfig {
  url: string;
  token: string;
  /**
   * Deadline of one command or pipeline, retries included (ms). Default 1000. A command that
   * does not answer in time rejects with a `TimeoutError`, which the cache engine treats like
   * any Redis fault (BYPASS / fail-safe).
   */
  timeoutMs?: number;
  /**
   * Let the client batch the commands issued in one tick into one `/pipeline` request. Default
   * false: a request's cache calls run one script at a time, so batching has nothing to join
   * and only costs (each command builds a `Pipeline`, whose ~200 bound command functions are
   * allocated per instance, behind a Proxy and two deferred ticks: ~33 µs of client CPU per
   * operation in the bench's mixed workload, bench/results/profile-notes.md). Turn it on for
   * a client whose calls are issued many at once: `Services.batchCache`, the warmer's.
   */
  autoPipelining?: boolean;
}

const DEFAULT_REDIS_TIMEOUT_MS = 1000;

/**
 * One Upstash client per request context. Everything but retries, the deadline,
 * auto-pipelining and the reply encoding is the client's default, so the same code talks to
 * Upstash in production and to tools/upstash-gateway locally.
 * Retries are bounded because the cache must fail fast and fall back to Postgres:
 * the library default (5 retries, exponential backoff) can hold a response for seconds.
 *
 * The deadline is a signal *factory*: @upstash/redis (since 1.35, upstash/redis-js#1379) calls
 * it once per request, so each command gets a fresh `AbortSignal.timeout`, and an aborted
 * request throws. (A plain AbortSignal would stay aborted for every later command, and the
 * client would answer an aborted request with a fake `200 {"result":"Aborted"}`.)
 */
export function createRedis(cfg: RedisConfig): Redis {
  const timeoutMs = cfg.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  return new Redis({
    url: cfg.url,
    token: cfg.token,
    enableTelemetry: false,
    retry: { retries: 1, backoff: () => 25 },
    signal: () => AbortSignal.timeout(timeoutMs),
    enableAutoPipelining: cfg.autoPipelining ?? false,
    // Plain JSON replies instead of the client's default base64: every string this app reads
    // back is text it wrote (JSON values, numbers, names), and base64 costs an encode on the
    // server, a third more bytes on the wire and, per reply string, an `atob`, a byte loop and
    // a `TextDecoder` in the Worker. What it guards against (Upstash's troubleshooting page:
    // replies that `res.json()` cannot read) are stored bytes that are not UTF-8, which this app
    // never writes; a value someone else wrote that is not JSON is a BYPASS for the engine either
    // way. Test: test/workers/redis-client.test.ts.
    responseEncoding: false,
  });
}

export type { Redis };
