/**
 * Where a warm hit's time goes: CPU per hit in the client, the gateway and redis-server,
 * measured apart, with no injected latency (so per-hit overhead is not hidden behind sleeps).
 *
 *   npx tsx bench/profile-hit.ts [--ops=20000] [--concurrency=20] [--modes=a,b] [--strict=0]
 *   npx tsx bench/profile-hit.ts --gateway-prof=/tmp/gw-prof   # gateway under --cpu-prof
 *   node --cpu-prof --import tsx bench/profile-hit.ts --modes=edgecache   # client profile
 *
 * The gateway runs as a child process (its CPU read from /proc/<pid>/stat), over a
 * redis-server of our own (CPU from INFO cpu, per-command time from INFO commandstats); the
 * client is this process (process.cpuUsage). Modes:
 *   raw-get, raw-evalsha   prebuilt /pipeline bodies over node:http (no @upstash/redis):
 *                          what the gateway and Redis spend on a GET vs an EVALSHA of hit.lua
 *   get                    @upstash/redis `get` of a cached row (the client's floor)
 *   edgecache, unkey       the bench's contenders (bench/contenders), getOrLoad / swr hits
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import { Redis as IORedis } from "ioredis";
import { EdgeCache } from "../src/cache/index";
import { hitScript } from "../src/cache/scripts/index";
import { startOwnRedis } from "../tools/lib/own-redis";
import { edgecache } from "./contenders/edgecache";
import { unkey } from "./contenders/unkey";
import { MemoryDb } from "./lib/db";
import type { Contender, ContenderModule } from "./lib/types";
import { benchUpstash } from "./lib/upstash";

const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const OPS = Number(arg("ops") ?? 20_000);
const CONCURRENCY = Number(arg("concurrency") ?? 20);
const MODES = (arg("modes") ?? "raw-get,raw-evalsha,get,unkey,edgecache").split(",");
const KEYS = 20;
const TOKEN = "profile-token";
const CLK_TCK = 100;

interface Sample {
  gatewayMs: number;
  redisMs: number;
  clientMs: number;
  wall: number;
}

function procCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  // utime, stime are fields 14 and 15 (1-based) of the whole line: 12 and 13 after "comm) ".
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

async function redisCpuMs(redis: IORedis): Promise<number> {
  const info = await redis.info("cpu");
  const num = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (num("used_cpu_sys") + num("used_cpu_user")) * 1000;
}

async function commandStats(redis: IORedis): Promise<Record<string, string>> {
  const info = await redis.info("commandstats");
  const out: Record<string, string> = {};
  for (const line of info.split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(line.trim());
    if (m) out[m[1] as string] = `${m[2]} calls, ${m[4]} µs/call`;
  }
  return out;
}

async function startGatewayChild(redisUrl: string): Promise<{ url: string; child: ChildProcess }> {
  const prof = arg("gateway-prof");
  const child = spawn(
    process.execPath,
    [
      ...(prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : []),
      "--import",
      "tsx",
      "tools/upstash-gateway/cli.ts",
    ],
    {
      env: {
        ...process.env,
        GATEWAY_PORT: "0",
        REDIS_URL: redisUrl,
        GATEWAY_TOKENS: `${TOKEN}:0`,
        GATEWAY_STRICT_KEYS: arg("strict") ?? "1",
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.once("exit", (code) => reject(new Error(`gateway exited ${code}: ${out}`)));
  });
  return { url, child };
}

async function runConcurrent(ops: number, concurrency: number, op: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ops) await op(next++);
    }),
  );
}

async function main() {
  const own = await startOwnRedis();
  const admin = new IORedis(own.url);
  const { url, child } = await startGatewayChild(own.url);
  const pid = child.pid as number;
  const db = new MemoryDb(0);
  const env = (prefix: string) => ({
    upstash: () => benchUpstash(url, TOKEN),
    redisProxyUrl: "",
    prefix,
    db,
  });
  const keys = Array.from({ length: KEYS }, (_, i) => `warm:${i}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const post = (path: string, body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        `${url}${path}`,
        {
          method: "POST",
          agent,
          headers: {
            authorization: `Bearer ${TOKEN}`,
            "content-type": "application/json",
            "upstash-encoding": "base64",
          },
        },
        (res) => {
          // A /pipeline answers 200 with a per-command error inside (NOSCRIPT, say): read the
          // body, or a failing command would be measured as a fast one.
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => {
            if (res.statusCode !== 200) reject(new Error(`${res.statusCode}`));
            else if (text.includes('"error"')) reject(new Error(`${path}: ${text.slice(0, 200)}`));
            else resolve();
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  // Fill: the edgecache and unkey entries every mode reads (a 200-byte payload row).
  const contenders: Record<string, Contender> = {};
  for (const m of [edgecache, unkey] as ContenderModule[]) {
    const c = await m.create(env(`p-${m.id}`));
    for (const k of keys) await c.get(k, () => db.load(k, 0));
    await c.settle();
    // Read once more: edgecache's first read of a key goes to the acquire script, its second
    // to hit.lua, whose EVAL (after NOSCRIPT) lets the gateway map the raw EVALSHA's SHA.
    for (const k of keys) await c.get(k, () => db.load(k, 0));
    contenders[m.id] = c;
  }
  // The raw GET reads a string of the same row as JSON; the raw EVALSHA sends what edgecache's
  // hit sends for these keys (entry, lease, version key; no tags).
  const ks = new EdgeCache({ redis: env("x").upstash(), prefix: "p-edgecache" }).keys;
  const upstash = env("x").upstash();
  for (const k of keys) await upstash.set(`raw:${k}`, await db.load(k, 0));
  const bodies: Record<string, (i: number) => string> = {
    "raw-get": (i) => JSON.stringify([["get", `raw:${keys[i % KEYS]}`]]),
    "raw-evalsha": (i) => {
      const k = keys[i % KEYS] as string;
      const ekeys = [ks.entry(k), ks.lease(k), ks.version(k)];
      return JSON.stringify([["evalsha", hitScript.sha1, ekeys.length, ...ekeys, "1", "[]"]]);
    },
  };
  const getClient = env("x").upstash();
  const ops: Record<string, (i: number) => Promise<void>> = {
    ...Object.fromEntries(
      Object.entries(bodies).map(([name, body]) => [
        name,
        (i: number) => post("/pipeline", body(i)),
      ]),
    ),
    get: async (i) => {
      if (!(await getClient.get(`raw:${keys[i % KEYS]}`))) throw new Error("get missed");
    },
    edgecache: async (i) => {
      const k = keys[i % KEYS] as string;
      await contenders.edgecache?.get(k, () => Promise.reject(new Error(`edgecache missed ${k}`)));
    },
    unkey: async (i) => {
      const k = keys[i % KEYS] as string;
      await contenders.unkey?.get(k, () => Promise.reject(new Error(`unkey missed ${k}`)));
    },
  };

  const results: Record<string, Sample & { stats: Record<string, string> }> = {};
  for (const mode of MODES) {
    const op = ops[mode];
    if (!op) throw new Error(`unknown mode ${mode}`);
    await runConcurrent(Math.min(2000, OPS / 5), CONCURRENCY, op); // warm up JIT and sockets
    await admin.config("RESETSTAT");
    const g0 = procCpuMs(pid);
    const r0 = await redisCpuMs(admin);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await runConcurrent(OPS, CONCURRENCY, op);
    const wall = performance.now() - t0;
    const c1 = process.cpuUsage(c0);
    const r1 = await redisCpuMs(admin);
    const g1 = procCpuMs(pid);
    results[mode] = {
      gatewayMs: g1 - g0,
      redisMs: r1 - r0,
      clientMs: (c1.user + c1.system) / 1000,
      wall,
      stats: await commandStats(admin),
    };
  }
  const us = (ms: number) => ((ms * 1000) / OPS).toFixed(1).padStart(7);
  console.log(`${OPS} ops per mode, concurrency ${CONCURRENCY}, no injected latency`);
  console.log("mode          ops/s   client µs/op  gateway µs/op  redis µs/op");
  for (const [mode, r] of Object.entries(results)) {
    console.log(
      `${mode.padEnd(12)} ${((OPS * 1000) / r.wall).toFixed(0).padStart(6)}  ${us(r.clientMs)}       ${us(r.gatewayMs)}        ${us(r.redisMs)}`,
    );
  }
  for (const [mode, r] of Object.entries(results)) console.log(mode, JSON.stringify(r.stats));

  for (const c of Object.values(contenders)) await c.close();
  agent.destroy();
  admin.disconnect();
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
  await own.stop();
}

await main();
process.exit(0);
