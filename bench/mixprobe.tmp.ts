import { edgecache } from "/work/main/bench/contenders/edgecache";
import { Background } from "/work/main/bench/lib/background";
import { startStage } from "/work/main/bench/lib/harness";
import { percentile, seededRandom, zipfSampler } from "/work/main/bench/lib/stats";
import { EdgeCache } from "/work/main/src/cache/index";

const stage = await startStage([edgecache], { baseMs: 3, jitterMs: 4 }, () => {});

import net from "node:net";

let connects = 0;
const origConnect = net.Socket.prototype.connect;
(net.Socket.prototype as any).connect = function (...a: any[]) {
  connects++;
  return (origConnect as any).apply(this, a);
};
setInterval(() => {}, 1000).unref();
const env = stage.env(edgecache, "mp");
const redis = env.upstash();
const bg = new Background();
const engine = () => new EdgeCache({ redis, prefix: env.prefix, onError: (e) => console.error(e) });
const db = stage.db;
db.delayMs = 10;
const by = new Map<string, number[]>();
const add = (k: string, t: number) => {
  if (!by.has(k)) by.set(k, []);
  by.get(k)!.push(t);
};
const deadline = performance.now() + 8000;
let ops = 0;
await stage.resetCost(edgecache);
const client = async (id: number) => {
  const random = seededRandom(1000 + id);
  const draw = zipfSampler(10_000, 1, random);
  while (performance.now() < deadline) {
    const key = `m:${draw()}`;
    if (random() < 0.05) {
      const v = db.commit(key);
      const t = performance.now();
      await engine().apply({ keys: [key], versions: { [key]: v } });
      add("write", performance.now() - t);
    } else {
      const t = performance.now();
      const r = await engine().getOrLoad(key, () => db.load(key), {
        ttl: 300_000,
        versionKey: key,
        versionOf: (row: any) => row.version,
        waitUntil: bg.waitUntil,
      });
      const dt = performance.now() - t;
      add(r.status + (r.waitedMs !== undefined ? "+waited" : ""), dt);
      add("all-reads", dt);
    }
    ops++;
  }
};
await Promise.all(Array.from({ length: 50 }, (_, i) => client(i)));
await bg.settle();
console.log("connects", connects);
console.log("ops/s", (ops / 8).toFixed(0), "cost", JSON.stringify(await stage.cost(edgecache)));
for (const [k, v] of [...by].sort())
  console.log(
    k.padEnd(14),
    String(v.length).padStart(6),
    "p50",
    percentile(v, 50).toFixed(1),
    "p90",
    percentile(v, 90).toFixed(1),
    "p99",
    percentile(v, 99).toFixed(1),
  );
console.log(JSON.stringify(await engine().stats()));
await stage.close();
process.exit(0);
