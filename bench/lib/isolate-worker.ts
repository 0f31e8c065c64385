/**
 * One "isolate" of the multi-isolate stampede: a worker thread has its own module graph, so
 * each contender's library (edgecache's module-scope state included) is a separate instance
 * here, as in a separate Workers isolate, with its own Redis client. The database stays in the
 * main thread (one truth, one load counter): loads and version queries go over the port.
 * A worker serves the contenders one after another ("prepare" → "ready", "go" → "done").
 */
import { parentPort } from "node:worker_threads";
import { contenderById } from "../contenders/index";
import type { Db, Row } from "./db";
import { installLeanFetch } from "./lean-fetch";
import type { Contender } from "./types";
import { benchUpstash } from "./upstash";

// `--transport=lean` (bench/run.ts): this isolate's clients use the same HTTP client as the rest.
if (process.env.BENCH_TRANSPORT === "lean") installLeanFetch();

export interface IsolateJob {
  contenderId: string;
  gatewayUrl: string;
  token: string;
  proxyUrl: string;
  prefix: string;
  key: string;
  reads: number;
}

export type ToWorker =
  | { type: "prepare"; job: IsolateJob }
  | { type: "go" }
  | { type: "answer"; id: number; row?: Row; version?: number }
  | { type: "release" };
export type FromWorker =
  | { type: "ready" }
  | { type: "load"; id: number; key: string; warmup: boolean }
  | { type: "version"; id: number; key: string }
  | { type: "done"; times: number[]; errors: string[] }
  | { type: "released" }
  | { type: "failed"; message: string };

const port = parentPort;
if (!port) throw new Error("isolate-worker must run in a worker thread");
let nextId = 0;
const waiting = new Map<number, (answer: { row?: Row; version?: number }) => void>();
const ask = (
  msg: { type: "load"; key: string; warmup: boolean } | { type: "version"; key: string },
) =>
  new Promise<{ row?: Row; version?: number }>((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    port.postMessage({ ...msg, id } satisfies FromWorker);
  });
const remoteDb = (warmup: () => boolean): Db => ({
  load: async (key) => (await ask({ type: "load", key, warmup: warmup() })).row as Row,
  version: async (key) => (await ask({ type: "version", key })).version as number,
});

let cache: Contender | undefined;
let job: IsolateJob | undefined;

port.on("message", async (msg: ToWorker) => {
  try {
    if (msg.type === "answer") {
      waiting.get(msg.id)?.(msg);
      waiting.delete(msg.id);
    } else if (msg.type === "prepare") {
      job = msg.job;
      let warming = true;
      const db = remoteDb(() => warming);
      const current = job;
      cache = await contenderById(current.contenderId).create({
        upstash: () => benchUpstash(current.gatewayUrl, current.token),
        redisProxyUrl: current.proxyUrl,
        prefix: current.prefix,
        db,
      });
      // Warm this isolate's code path (JIT, connections, scripts) on a key of its own.
      const warmKey = `warmup:${Math.random().toString(36).slice(2)}`;
      for (let i = 0; i < 3; i++) await cache.get(warmKey, () => db.load(warmKey));
      await cache.settle();
      warming = false;
      port.postMessage({ type: "ready" } satisfies FromWorker);
    } else if (msg.type === "go" && cache && job) {
      const { key, reads } = job;
      const db = remoteDb(() => false);
      const errors: string[] = [];
      const ready = cache;
      const times = await Promise.all(
        Array.from({ length: reads }, async () => {
          const t = performance.now();
          try {
            await ready.get(key, () => db.load(key));
          } catch (err) {
            errors.push(err instanceof Error ? err.message : String(err));
          }
          return performance.now() - t;
        }),
      );
      await ready.settle();
      port.postMessage({ type: "done", times, errors } satisfies FromWorker);
    } else if (msg.type === "release") {
      await cache?.close();
      cache = undefined;
      port.postMessage({ type: "released" } satisfies FromWorker);
    }
  } catch (err) {
    port.postMessage({
      type: "failed",
      message: err instanceof Error ? err.message : String(err),
    } satisfies FromWorker);
  }
});
port.postMessage({ type: "ready" } satisfies FromWorker);
