/**
 * The engine under REAL eviction: a private redis-server (tiny maxmemory, allkeys-lru or
 * allkeys-lfu, `evicted` keyspace notifications) behind the gateway. Each scenario evicts one
 * of the engine's own keys (version key, tag counter) by filling memory while touching the
 * keys it must keep, then checks that no read returns data older than an acknowledged write:
 * the engine fails closed.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkload } from "../../../bench/eviction-workload";
import { EdgeCache, FlightRegistry, KnownEntries } from "../../../src/cache";
import { EvictionWatch } from "../../../tools/lib/evictions";
import { type OwnRedis, startOwnRedis } from "../../../tools/lib/own-redis";
import { type Gateway, startGateway } from "../../../tools/upstash-gateway/server";
import { gate, sleep } from "./harness";

interface Product {
  id: number;
  version: number;
  name: string;
}

const info = (text: string, field: string) =>
  Number(text.match(new RegExp(`^${field}:(\\d+)`, "m"))?.[1] ?? 0);

describe.each(["allkeys-lru", "allkeys-lfu"] as const)("real eviction, %s", (policy) => {
  let server: OwnRedis;
  let gateway: Gateway;
  let admin: IORedis;
  let watch: EvictionWatch;
  let redis: Redis;
  const lfu = policy.endsWith("lfu");

  beforeAll(async () => {
    // lfu-log-factor 0: every access adds 1 to the LFU counter, so "touched more" is exact.
    // maxmemory-samples 64: each eviction looks at (about) every key, not 5 random ones, so it
    // takes the least recently / frequently used key rather than a tie among fresh ones.
    server = await startOwnRedis([
      "--maxmemory-policy",
      policy,
      "--lfu-log-factor",
      "0",
      "--maxmemory-samples",
      "64",
    ]);
    admin = new IORedis(server.url, { maxRetriesPerRequest: 1 });
    const token = `ev-${randomBytes(6).toString("hex")}`;
    gateway = await startGateway({ port: 0, redisUrl: server.url, tokens: { [token]: { db: 0 } } });
    watch = await EvictionWatch.start(server.url);
    redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
  });

  afterAll(async () => {
    watch?.close();
    admin?.disconnect();
    await gateway?.close();
    await server?.stop();
  });

  const cacheFor = (prefix = `t${randomBytes(4).toString("hex")}`) =>
    new EdgeCache({ redis, prefix, onError: () => {} });

  /**
   * Evicts `target` for real: lowers maxmemory to just above the current use and adds fillers
   * until the policy takes the target. The fillers are RESTOREd with an LRU idle time / LFU
   * frequency between the target's and that of `keep` (touched before each filler), so the
   * policy's order is target, then fillers, never `keep`. Fails if either goes wrong.
   */
  async function forceEvict(target: string, keep: string[]): Promise<void> {
    expect(await admin.exists(target), `${target} must exist before it is evicted`).toBe(1);
    // LRU idle time has a 1 s resolution: target idle >= 3 s, fillers 2 s, kept keys <= 1 s
    // (touched before each batch; a second may tick between the touch and an eviction).
    if (!lfu) await sleep(3100);
    const age = lfu ? ["FREQ", "30"] : ["IDLETIME", "2"];
    let gone = false;
    void watch.evicted(target).then(() => {
      gone = true;
    });
    await admin.set("filler:template", "f".repeat(2048));
    const payload = await admin.dumpBuffer("filler:template");
    await admin.unlink("filler:template");
    // used_memory includes client buffers, which Redis frees on idle connections (the sleep)
    // and reallocates on use: a margin well above them keeps the limit about keys.
    const used = info(await admin.info("memory"), "used_memory");
    await admin.config("SET", "maxmemory", String(used + 256 * 1024));
    const fillers: string[] = [];
    try {
      while (!gone && fillers.length < 3000) {
        const p = admin.pipeline();
        for (const key of keep) for (let i = 0; i < (lfu ? 60 : 1); i++) p.touch(key);
        for (let i = 0; i < 5; i++) {
          const key = `filler:${fillers.length}`;
          fillers.push(key);
          p.call("RESTORE", key, "0", payload, ...age);
        }
        await p.exec();
        await watch.settle();
      }
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
    expect(gone, `${target} was not evicted after ${fillers.length} fillers`).toBe(true);
    for (const key of keep) {
      expect(
        await admin.exists(key),
        `the scenario needs ${key} to survive (evicted: ${watch.keys.includes(key)}; ${watch.keys.slice(0, 12).join(" ")})`,
      ).toBe(1);
    }
    await admin.unlink(...fillers);
  }

  it("an entry whose version key was evicted is not served over a newer version", async () => {
    const cache = cacheFor();
    let row: Product = { id: 1, version: 1, name: "Lamp" };
    const opts = { versionKey: "product:1", versionOf: (p: Product) => p.version, ttl: 600_000 };
    await cache.getOrLoad("product:1", async () => ({ ...row }), opts);
    expect((await cache.getOrLoad("product:1", async () => ({ ...row }), opts)).status).toBe("HIT");

    row = { ...row, version: 2, name: "Lamp v2" };
    await cache.bumpVersion("product", 1, 2); // acknowledged: the entry itself stays (ver 1)
    await forceEvict(cache.keys.version("product:1"), [cache.keys.entry("product:1")]);

    const read = await cache.getOrLoad("product:1", async () => ({ ...row }), opts);
    expect(read.value.version).toBe(2);
    expect(read.status).toBe("MISS");
  });

  it("an entry whose tag counter was evicted after a bump is not served", async () => {
    const cache = cacheFor();
    let list = { names: ["Lamp"], version: 1 };
    const opts = { tags: ["category:1"], ttl: 600_000 };
    await cache.getOrLoad("list:1", async () => ({ ...list }), opts);
    expect((await cache.getOrLoad("list:1", async () => ({ ...list }), opts)).status).toBe("HIT");

    list = { names: ["Lamp", "Desk"], version: 2 };
    await cache.invalidateTags("category:1");
    await forceEvict(cache.keys.tag("category:1"), [cache.keys.entry("list:1")]);

    const read = await cache.getOrLoad("list:1", async () => ({ ...list }), opts);
    expect(read.value.version).toBe(2);
  });

  it("a tagsOf fill is refused when its tag was bumped and then evicted during the load", async () => {
    const cache = cacheFor();
    let row: Product = { id: 7, version: 1, name: "Chair" };
    await cache.invalidateTags("category:3"); // the counter exists, as in a running system
    const held = gate<Product>();
    const opts = { tagsOf: () => ["category:3"], ttl: 600_000, leaseTtl: 60_000 };
    const first = cache.getOrLoad("product:7", held.load, opts);
    await held.started; // the lease is ours; the loader has read row v1
    const loaded = { ...row };

    row = { ...row, version: 2, name: "Chair v2" };
    await cache.invalidateTags("category:3"); // acknowledged write, tag-only invalidation
    await forceEvict(cache.keys.tag("category:3"), [cache.keys.lease("product:7")]);
    held.open(loaded);
    await first; // began before the write: v1 is a legitimate answer for it

    const read = await cache.getOrLoad("product:7", async () => ({ ...row }), opts);
    expect(read.value.version).toBe(2);
    expect(read.status).toBe("MISS");
  });

  it("a tagsOf fill still lands when its counter was evicted before the load began", async () => {
    const cache = cacheFor();
    await cache.invalidateTags("category:5");
    await forceEvict(cache.keys.tag("category:5"), [cache.keys.tagClock]);
    await sleep(2); // the load begins in a later millisecond than the last bump
    const opts = { tagsOf: () => ["category:5"], ttl: 600_000 };
    const load = async () => ({ id: 8, version: 1, name: "Shelf" });
    expect((await cache.getOrLoad("product:8", load, opts)).status).toBe("MISS");
    expect((await cache.getOrLoad("product:8", load, opts)).status).toBe("HIT");
  });

  it("a fill guarded by another-named version key is refused when that key was evicted during the load", async () => {
    const cache = cacheFor();
    let row: Product = { id: 9, version: 1, name: "Desk" };
    const opts = {
      versionKey: "product:9",
      versionOf: (p: Product) => p.version,
      ttl: 600_000,
      leaseTtl: 60_000,
    };
    await cache.getOrLoad("product:9", async () => ({ ...row }), opts); // v key = 1
    const held = gate<Product>();
    const first = cache.getOrLoad("product-slug:desk", held.load, opts);
    await held.started;
    const loaded = { ...row };

    row = { ...row, version: 2, name: "Desk v2" };
    // Acknowledged: revokes the lease of product:9, not of product-slug:desk.
    await cache.bumpVersion("product", 9, 2);
    await forceEvict(cache.keys.version("product:9"), [cache.keys.lease("product-slug:desk")]);
    held.open(loaded);
    await first;

    const read = await cache.getOrLoad("product-slug:desk", async () => ({ ...row }), opts);
    expect(read.value.version).toBe(2);
  });

  it("a concurrent Zipf workload with writes never reads older than an acknowledged write", async () => {
    await admin.flushall();
    await watch.settle();
    watch.reset();
    const evictedBefore = info(await admin.info("stats"), "evicted_keys");
    const empty = info(await admin.info("memory"), "used_memory");
    // About a third of what 300 rows take (≈ 650 KiB measured): the engine's keys go too.
    await admin.config("SET", "maxmemory", String(empty + 220 * 1024));
    try {
      const result = await runWorkload(
        (onError) => new EdgeCache({ redis, prefix: "w", onError }),
        {
          keys: 300,
          ops: 3000,
          zipf: 1,
          writeShare: 0.05,
          concurrency: 8,
          seed: 7,
          payloadBytes: 400,
          categories: 20,
        },
      );
      await watch.settle();
      const kinds = watch.byKind("w");
      expect(info(await admin.info("stats"), "evicted_keys")).toBeGreaterThan(evictedBefore);
      expect(kinds.version + kinds.tag, "engine keys were evicted").toBeGreaterThan(0);
      expect(result.staleExamples).toEqual([]);
      expect(result.staleReads).toBe(0);
      expect(result.writeErrors).toBe(0);
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  });
});

describe("noeviction (Upstash's default: a full database refuses writes)", () => {
  /**
   * A maxmemory below any use: with noeviction every write is refused, reads still served. Set
   * 1 KiB under the used memory instead, it let a write through now and then (the server's use
   * fell by more than that between the reading and the write: CI failed on it once).
   */
  const FULL = "1";

  let server: OwnRedis;
  let gateway: Gateway;
  let admin: IORedis;
  let redis: Redis;

  beforeAll(async () => {
    server = await startOwnRedis(["--maxmemory-policy", "noeviction"]);
    admin = new IORedis(server.url, { maxRetriesPerRequest: 1 });
    const token = `ne-${randomBytes(6).toString("hex")}`;
    gateway = await startGateway({ port: 0, redisUrl: server.url, tokens: { [token]: { db: 0 } } });
    redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
  });

  afterAll(async () => {
    admin?.disconnect();
    await gateway?.close();
    await server?.stop();
  });

  it("still serves the entries it holds to an isolate that never read them (the read-only hit), and loads the rest around it", async () => {
    const prefix = `ne${randomBytes(4).toString("hex")}`;
    const opts = { earlyRefresh: false } as const;
    const writer = new EdgeCache({ redis, prefix, onError: () => {} });
    for (const id of [1, 2, 3]) {
      expect((await writer.getOrLoad(`p:${id}`, async () => ({ id }), opts)).status).toBe("MISS");
    }
    await writer.settle();
    await admin.config("SET", "maxmemory", FULL); // full: every write refused
    try {
      // Another isolate (its own record of entries), which predicts a miss for keys it never
      // read and would go to the writing acquire script first.
      const faults: unknown[] = [];
      const reader = new EdgeCache({
        redis,
        prefix,
        known: new KnownEntries(),
        flights: new FlightRegistry(),
        onError: (error) => faults.push(error),
      });
      for (const id of [1, 2, 3]) {
        const read = await reader.getOrLoad(`p:${id}`, async () => ({ id: -1 }), opts);
        expect(read).toMatchObject({ status: "HIT", value: { id } });
      }
      const absent = await reader.getOrLoad("p:9", async () => ({ id: 9 }), opts);
      expect(absent).toMatchObject({ status: "BYPASS", value: { id: 9 } });
      expect(faults.some((f) => /OOM/.test(String(f)))).toBe(true);
      // A write here whose invalidation Redis refused too (full): this isolate never serves the
      // entry it could not remove (the outbox applies the invalidation later, window 3).
      await expect(reader.apply({ keys: ["p:2"] })).rejects.toThrow(/OOM/);
      const after = await reader.getOrLoad("p:2", async () => ({ id: 2, renamed: true }), opts);
      expect(after).toMatchObject({ status: "BYPASS", value: { renamed: true } });
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  });

  /** Runs `fn` with Redis full (every write refused), then gives it room again. */
  async function full<T>(fn: () => Promise<T>): Promise<T> {
    await admin.config("SET", "maxmemory", FULL);
    try {
      return await fn();
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  }

  const isolate = (prefix: string) =>
    new EdgeCache({
      redis,
      prefix,
      known: new KnownEntries(),
      flights: new FlightRegistry(),
      onError: () => {},
    });

  it("an isolate whose write was refused serves none of the prefix from the read-only hit: keys it never read, tags", async () => {
    // Found by a race audit: the guard covered only keys the isolate knew. A write route of an
    // isolate invalidates keys it never read; a tag bump covers entries it does not know.
    // Two prefixes: the refusal is recorded per prefix, for the whole isolate.
    const prefix = `ne${randomBytes(4).toString("hex")}`;
    const tagged = `${prefix}t`;
    const opts = { earlyRefresh: false } as const;
    const writer = new EdgeCache({ redis, prefix, onError: () => {} });
    await writer.getOrLoad("p:1", async () => ({ name: "old" }), opts);
    const tagWriter = new EdgeCache({ redis, prefix: tagged, onError: () => {} });
    await tagWriter.getOrLoad("list", async () => ["old"], { ...opts, tags: ["cat"] });
    await writer.settle();
    await tagWriter.settle();
    await full(async () => {
      const byKey = isolate(prefix);
      await expect(byKey.apply({ keys: ["p:1"] })).rejects.toThrow(/OOM/);
      const read = await byKey.getOrLoad("p:1", async () => ({ name: "new" }), opts);
      expect(read).toMatchObject({ status: "BYPASS", value: { name: "new" } });

      const byTag = isolate(tagged);
      await expect(byTag.invalidateTags("cat")).rejects.toThrow(/OOM/);
      const list = await byTag.getOrLoad("list", async () => ["new"], { ...opts, tags: ["cat"] });
      expect(list).toMatchObject({ status: "BYPASS", value: ["new"] });
    });
    // Room again: the next read's acquire goes through and the prefix is read as usual (the
    // refused writes are the outbox's to apply now: window 3).
    const reader = isolate(prefix);
    expect((await reader.getOrLoad("p:9", async () => ({ n: 9 }), opts)).status).toBe("MISS");
  });
});
