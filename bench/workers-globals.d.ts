/**
 * The one Workers type the Worker code reachable from bench/outbox-drain.ts names (the purge
 * queue binding). The bench runs in Node and never has a queue; this lets the Node-side
 * typecheck follow those imports without pulling in @cloudflare/workers-types, whose globals
 * clash with Node's.
 */
interface Queue<Body = unknown> {
  send(body: Body, options?: { contentType?: string; delaySeconds?: number }): Promise<void>;
  sendBatch(
    messages: Iterable<{ body: Body; contentType?: string; delaySeconds?: number }>,
  ): Promise<void>;
}
