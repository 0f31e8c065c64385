import { Redis } from "@upstash/redis";

/**
 * A contender's @upstash/redis client on `token`, the same for every contender and configured
 * as the Worker's own (src/redis/client.ts): the library's defaults but telemetry and
 * **auto-pipelining, both off**, and **plain replies** instead of base64 (every value in the
 * bench is JSON text; base64 only adds an encode in the gateway and a decode per reply in the
 * client, whoever the client serves).
 *
 * Auto-pipelining is off because a Worker cannot fold one request's commands into another's:
 * in workerd each request runs in its own turn of the isolate's event loop, so even a client
 * kept at module scope sends every request's command in an HTTP request of its own
 * (test/node/workerd-pipelining.test.ts: 40 concurrent requests, 40 requests to Redis). In this
 * one Node process a shared auto-pipelining client would fold what the bench's concurrent
 * clients issue in one tick (a stampede's 200 GETs became one request), a saving no Worker
 * gets. Off, each command costs what it costs in a Worker, without the `Pipeline` the library
 * builds per command when it is on (~33 µs of client CPU per operation, measured).
 */
export function benchUpstash(url: string, token: string): Redis {
  return new Redis({
    url,
    token,
    enableTelemetry: false,
    enableAutoPipelining: false,
    responseEncoding: false,
  });
}
