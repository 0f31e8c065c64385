import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type OwnRedis, startOwnRedis } from "../../tools/lib/own-redis";
import { gatewayControl } from "../../tools/upstash-gateway/control";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";
import { infoField } from "../../tools/upstash-gateway/topology";
import { type GlobalGateway, startGlobalGateway } from "./global-gateway";

/**
 * The gateway's Global topology: its own primary and replica redis-servers (never the shared
 * one), the replica fed through a link that holds the replication stream back, reads routed
 * to the replica and writes to the primary, and `upstash-sync-token` as the primary's
 * replication offset. Driven by the real @upstash/redis client (readYourWrites on by default).
 */
const TOKEN = `gw-global-${randomBytes(6).toString("hex")}`;
const LAG_MS = 300;
const PRIMARY_LATENCY_MS = 40;
const REPLICA_LATENCY_MS = 5;

interface Stats {
  calls: { readOnly: number; writing: number; other: number };
  served: { primary: number; replica: number };
  syncWaits: { count: number; timeouts: number; totalMs: number };
}

function stats(gw: Gateway, token = TOKEN): Promise<Stats> {
  return gatewayControl<Stats>(gw.url, token, "stats");
}

async function raw(gw: Gateway, command: unknown[], syncToken?: string, token = TOKEN) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (syncToken !== undefined) headers["upstash-sync-token"] = syncToken;
  const res = await fetch(gw.url, { method: "POST", headers, body: JSON.stringify(command) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (bounded) until the replica holds `value` for `key`, i.e. replication caught up. */
async function replicated(replica: IORedis, key: string, value: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await replica.get(key)) !== value) {
    if (Date.now() > deadline) throw new Error(`replica never got ${key}=${value}`);
    await sleep(10);
  }
}

describe("Global topology: primary + lagging replica", () => {
  let global: GlobalGateway;
  let primary: OwnRedis;
  let replica: OwnRedis;
  let gateway: Gateway;
  let onPrimary: IORedis;
  let onReplica: IORedis;

  beforeAll(async () => {
    global = await startGlobalGateway(TOKEN, {
      replicationLagMs: LAG_MS,
      primaryLatencyMs: PRIMARY_LATENCY_MS,
      replicaLatencyMs: REPLICA_LATENCY_MS,
    });
    ({ primary, replica, gateway } = global);
    onPrimary = new IORedis(primary.url);
    onReplica = new IORedis(replica.url);
  });

  afterAll(async () => {
    await onPrimary?.quit();
    await onReplica?.quit();
    await global?.close();
  });

  beforeEach(async () => {
    await gatewayControl(gateway.url, TOKEN, "reset", {});
  });

  it("refuses a replica URL that names the primary itself (it would be wiped)", async () => {
    const sameServer = primary.url.replace("127.0.0.1", "localhost");
    await expect(
      startGateway({
        redisUrl: primary.url,
        tokens: { other: { db: 0 } },
        global: { replicaUrl: sameServer },
      }),
    ).rejects.toThrow(/names the primary's own redis-server/);
    expect(infoField(String(await onPrimary.info("replication")), "role")).toBe("master");
  });

  it("replicates for real, and late: the link holds the stream back", async () => {
    expect(infoField(String(await onReplica.info("replication")), "role")).toBe("slave");
    const key = `lag:${randomBytes(4).toString("hex")}`;
    await onPrimary.set(key, "v1");
    expect(await onReplica.get(key)).toBeNull();
    await replicated(onReplica, key, "v1");
  });

  it("serves read-only commands from the replica and writes from the primary", async () => {
    const redis = new Redis({ url: gateway.url, token: TOKEN, enableAutoPipelining: false });
    const key = `route:${randomBytes(4).toString("hex")}`;
    await redis.set(key, "1");
    await redis.get(key);
    await redis.exists(key);
    const s = await stats(gateway);
    expect(s.served).toEqual({ primary: 1, replica: 2 });
    expect(s.calls).toEqual({ readOnly: 2, writing: 1, other: 0 });
  });

  it("without a token a fresh client reads the old value; the writer's own client reads its write", async () => {
    const key = `ryw:${randomBytes(4).toString("hex")}`;
    await onPrimary.set(key, "old");
    await replicated(onReplica, key, "old");

    const writer = new Redis({ url: gateway.url, token: TOKEN }); // readYourWrites: true
    await writer.set(key, "new");
    const stranger = new Redis({ url: gateway.url, token: TOKEN });
    // Replica lag is 300 ms: a read without the writer's token sees the value before the write.
    expect(await stranger.get(key)).toBe("old");
    expect(await writer.get(key)).toBe("new");
    const s = await stats(gateway);
    expect(s.syncWaits.count).toBe(1);
    expect(s.syncWaits.timeouts).toBe(0);
    expect(s.served.replica).toBe(2);
  });

  it("answers a write with the primary's replication offset and holds a read until the replica has it", async () => {
    const key = `tok:${randomBytes(4).toString("hex")}`;
    const write = await raw(gateway, ["SET", key, "x"]);
    expect(write.status).toBe(200);
    const token = Number(write.headers.get("upstash-sync-token"));
    const offsetAfter = Number(
      infoField(String(await onPrimary.info("replication")), "master_repl_offset"),
    );
    expect(token).toBeGreaterThan(0);
    expect(token).toBeLessThanOrEqual(offsetAfter);

    const read = await raw(gateway, ["GET", key], String(token));
    expect(read.body).toEqual({ result: "x" });
    expect(Number(read.headers.get("upstash-sync-token"))).toBeGreaterThanOrEqual(token);
    const replicaOffset = Number(
      infoField(String(await onReplica.info("replication")), "slave_repl_offset"),
    );
    expect(replicaOffset).toBeGreaterThanOrEqual(token);
  });

  it("sends *_RO scripts to the replica (loading them there on NOSCRIPT) and EVAL to the primary", async () => {
    const redis = new Redis({ url: gateway.url, token: TOKEN, enableAutoPipelining: false });
    const key = `ro:${randomBytes(4).toString("hex")}`;
    await redis.set(key, "7");
    const source = `#!lua flags=no-writes,allow-key-locking\n-- ${key}\nreturn redis.call('GET', KEYS[1])`;
    const script = redis.createScript<number, true>(source, { readonly: true });
    expect(await script.exec([key], [])).toBe(7); // EVALSHA_RO: NOSCRIPT, then EVAL_RO
    expect(await script.exec([key], [])).toBe(7); // EVALSHA_RO
    await redis.eval("return 1", [], []);
    const s = await stats(gateway);
    // SET + EVAL on the primary; EVALSHA_RO, EVAL_RO, EVALSHA_RO on the replica.
    expect(s.served).toEqual({ primary: 2, replica: 3 });
  });

  it("counts EVAL/EVALSHA of a no-writes script as read-only yet serves it from the primary", async () => {
    const redis = new Redis({ url: gateway.url, token: TOKEN, enableAutoPipelining: false });
    const key = `nw:${randomBytes(4).toString("hex")}`;
    const source = `#!lua flags=no-writes,allow-key-locking\n-- ${key}\nreturn redis.call('GET', KEYS[1])`;
    const script = redis.createScript<string | null>(source); // EVALSHA, not *_RO
    // EVALSHA of a SHA not seen yet: writing (its flags are unknown), NOSCRIPT; then EVAL: read.
    expect(await script.exec([key], [])).toBeNull();
    expect(await script.exec([key], [])).toBeNull(); // EVALSHA, now known: read
    await redis.eval(`-- ${key}\nreturn 1`, [], []); // no no-writes flag: writing
    await expect(redis.evalsha("0".repeat(40), [], [])).rejects.toThrow(/NOSCRIPT/); // writing
    const s = await stats(gateway);
    expect(s.calls).toEqual({ readOnly: 2, writing: 3, other: 0 });
    // Only *_RO may go to the replica: the no-writes EVALSHA/EVAL ran on the primary.
    expect(s.served).toEqual({ primary: 5, replica: 0 });
  });

  it("shares one script cache across primary and replica, as Upstash's database has one", async () => {
    const redis = new Redis({ url: gateway.url, token: TOKEN, enableAutoPipelining: false });
    const key = `cache:${randomBytes(4).toString("hex")}`;
    const source = `#!lua flags=no-writes,allow-key-locking\n-- ${key}\nreturn 'ok'`;
    const sha = await redis.scriptLoad(source); // on the primary
    expect(await redis.evalshaRo(sha, [key], [])).toBe("ok"); // on the replica, no NOSCRIPT
    expect((await stats(gateway)).served).toEqual({ primary: 1, replica: 1 });
  });

  it("sends a pipeline with any write, and every transaction, to the primary", async () => {
    const key = `pipe:${randomBytes(4).toString("hex")}`;
    const headers = { authorization: `Bearer ${TOKEN}` };
    const post = (path: string, body: unknown) =>
      fetch(`${gateway.url}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
    await post("/pipeline", [
      ["GET", key],
      ["GET", key],
    ]);
    await post("/pipeline", [
      ["GET", key],
      ["SET", key, "1"],
    ]);
    await post("/multi-exec", [["GET", key]]);
    expect((await stats(gateway)).served).toEqual({ primary: 2, replica: 1 });
  });

  it("changes the lag at run time: with none, a read right after a write sees it", async () => {
    // Bytes already in the link keep their order (and their delay): let them through first.
    await sleep(LAG_MS + 50);
    gateway.topology?.setReplicationLag(0);
    try {
      const key = `nolag:${randomBytes(4).toString("hex")}`;
      await raw(gateway, ["SET", key, "v"]);
      await sleep(20);
      expect((await raw(gateway, ["GET", key])).body).toEqual({ result: "v" });
    } finally {
      gateway.topology?.setReplicationLag(LAG_MS);
    }
  });

  it("applies the primary's latency to writes and the replica's to reads", async () => {
    const key = `lat:${randomBytes(4).toString("hex")}`;
    let started = performance.now();
    await raw(gateway, ["SET", key, "1"]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(PRIMARY_LATENCY_MS - 1);
    started = performance.now();
    await raw(gateway, ["GET", key]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(REPLICA_LATENCY_MS - 1);
  });
});

describe("Global topology: a replica that cannot catch up in time", () => {
  let primary: OwnRedis;
  let replica: OwnRedis;
  let gateway: Gateway;

  beforeAll(async () => {
    [primary, replica] = await Promise.all([startOwnRedis(), startOwnRedis()]);
    gateway = await startGateway({
      redisUrl: primary.url,
      tokens: { [TOKEN]: { db: 0 } },
      global: { replicaUrl: replica.url, replicationLagMs: 1000, syncTimeoutMs: 100 },
    });
  });

  afterAll(async () => {
    await gateway?.close();
    await Promise.all([primary?.stop(), replica?.stop()]);
  });

  it("answers 503 with Retry-After instead of a stale read when the wait runs out", async () => {
    const key = `late:${randomBytes(4).toString("hex")}`;
    const write = await raw(gateway, ["SET", key, "x"]);
    const token = write.headers.get("upstash-sync-token") ?? "";
    const read = await raw(gateway, ["GET", key], token);
    expect(read.status).toBe(503);
    expect(read.headers.get("retry-after")).toBe("1");
    expect((read.body as { error: string }).error).toMatch(
      /Read replica has not caught up with upstash-sync-token \d+ after \d+ ms/,
    );
    expect((await stats(gateway)).syncWaits).toMatchObject({ count: 1, timeouts: 1 });
    // The same read without a token is served at once, from the replica, stale.
    expect((await raw(gateway, ["GET", key])).body).toEqual({ result: null });
  });
});
