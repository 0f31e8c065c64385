/**
 * The Upstash gateway in a worker thread of its own: it must not share an event loop with the
 * clients it serves, or the bench would measure the clients' CPU queue instead of the round trip.
 * Controlled over its HTTP control API like any gateway; "close" ends it.
 */
import { parentPort, workerData } from "node:worker_threads";
import { startGateway } from "../../tools/upstash-gateway/server";
import type { GlobalOptions } from "../../tools/upstash-gateway/topology";

const port = parentPort;
if (!port) throw new Error("gateway-worker must run in a worker thread");
const { redisUrl, tokens, global } = workerData as {
  redisUrl: string;
  tokens: Record<string, { db: number }>;
  global?: GlobalOptions;
};
// No strict key check here: it is a Lua prelude the gateway wraps around every flagged script
// to catch an undeclared key in tests (which keep it on), costing such a script about 1.5× its
// own Redis time (bench/results/profile-notes.md). Upstash checks keys inside its server; the
// bench measures speed, so it does not charge edgecache's flagged scripts for our test harness.
const gateway = await startGateway({ port: 0, redisUrl, tokens, global, strictKeys: false });
port.on("message", async (msg: { type: string }) => {
  if (msg.type === "close") {
    await gateway.close();
    port.postMessage({ type: "closed" });
  }
});
port.postMessage({ type: "ready", url: gateway.url });
