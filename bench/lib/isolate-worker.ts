/**
 * One "isolate" of the multi-isolate stampede: a worker thread has its own module graph, so
 * the contender's library (and edgecache's module-scope state) is a separate instance here, as
 * in a separate Workers isolate; it gets its own Redis client. The database stays in the main
 * thread (one truth, one load counter): loads are asked for over the message port.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Redis } from "@upstash/redis";
import { contenderById } from "../contenders/index";
import type { Db, Row } from "./db";

export interface IsolateData {
  contenderId: string;
  gatewayUrl: string;
  token: string;
  proxyUrl: string;
  prefix: string;
  key: string;
  reads: number;
}

export type ToWorker = { type: "go" } | { type: "loaded"; id: number; row: Row } | { type: "close" };
export type FromWorker =
  | { type: "ready" }
  | { type: "load"; id: number; key: string }
  | { type: "done"; times: number[]; errors: string[] };

const port = parentPort;
if (!port) throw new Error("isolate-worker must run in a worker thread");
const data = workerData as IsolateData;
let nextId = 0;
const waiting = new Map<number, (row: Row) => void>();

const remoteDb: Db = {
  load: (key) =>
    new Promise<Row>((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      port.postMessage({ type: "load", id, key } satisfies FromWorker);
    }),
  version: () => Promise.reject(new Error("version queries are not used in the stampede")),
};

const cache = await contenderById(data.contenderId).create({
  upstash: () => new Redis({ url: data.gatewayUrl, token: data.token, enableTelemetry: false }),
  redisProxyUrl: data.proxyUrl,
  prefix: data.prefix,
  db: remoteDb,
});

port.on("message", async (msg: ToWorker) => {
  if (msg.type === "loaded") {
    waiting.get(msg.id)?.(msg.row);
    waiting.delete(msg.id);
  } else if (msg.type === "go") {
    const errors: string[] = [];
    const times = await Promise.all(
      Array.from({ length: data.reads }, async () => {
        const t = performance.now();
        try {
          await cache.get(data.key, () => remoteDb.load(data.key));
        } catch (err) {
          errors.push(err instanceof Error ? err.message : String(err));
        }
        return performance.now() - t;
      }),
    );
    await cache.settle();
    port.postMessage({ type: "done", times, errors } satisfies FromWorker);
  } else if (msg.type === "close") {
    await cache.close();
    port.close();
  }
});
port.postMessage({ type: "ready" } satisfies FromWorker);
