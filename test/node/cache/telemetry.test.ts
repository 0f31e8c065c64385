import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ScriptClient } from "../../../src/cache";
import { acquireScript, hitScript, statsFlushScript } from "../../../src/cache/scripts";
import {
  FLUSH_LOST_MS,
  IsolateTelemetry,
  MAX_TELEMETRY_PREFIXES,
} from "../../../src/cache/telemetry";
import { FLUSH_WAIT_MS } from "../../../src/cache/telemetry/flush";
import { type CacheHarness, cacheHarness, gate, sleep } from "./harness";

/**
 * Stats and hot-key samples are counted in the isolate and flushed off the response path, to
 * per-isolate shards (src/cache/telemetry). Against real Redis through the gateway, whose
 * counters tell read-only from writing calls.
 */
let h: CacheHarness;
const noEarly = { earlyRefresh: false as const };
/** Each test's isolates never flush on their own unless the test says so. */
const quiet = { flushIntervalMs: 3_600_000 };

beforeAll(async () => {
  h = await cacheHarness();
});
afterAll(async () => {
  await h.close();
});

const prefixOf = () => `tm${Math.random().toString(36).slice(2, 10)}`;

/**
 * The harness's client, counting calls per script ("flush", "read", "other") into `calls`:
 * the client auto-pipelines a flush with a concurrent read into one HTTP request, so the
 * gateway's request count alone cannot tell them apart.
 */
function countingClient(calls: Map<string, number>): ScriptClient {
  return {
    evalsha: (sha, keys, args) => {
      const name =
        sha === statsFlushScript.sha1
          ? "flush"
          : sha === hitScript.sha1 || sha === acquireScript.sha1
            ? "read"
            : "other";
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return h.redis.evalsha(sha, keys, args);
    },
    eval: (script, keys, args) => h.redis.eval(script, keys, args),
  };
}

describe("the hit writes nothing", () => {
  it("a hit (version key + tag) is one read-only request: the script runs under EVALSHA_RO", async () => {
    const errors: unknown[] = [];
    const prefix = prefixOf();
    const opts = {
      ...noEarly,
      tags: ["category:1"],
      versionKey: "product:1",
      versionOf: (p: { version: number }) => p.version,
      consistency: "replica" as const,
    };
    const writer = h.cache({ telemetry: { isolate: new IsolateTelemetry(), ...quiet } }, prefix);
    await writer.getOrLoad("product:1", async () => ({ version: 3 }), opts);
    const reader = h.cache(
      {
        telemetry: { isolate: new IsolateTelemetry(), ...quiet },
        // decay 1: a minute boundary between the reads and hotKeys() would halve the score.
        hotKeys: { sampleRate: 1, decay: 1 },
        onError: (e) => errors.push(e),
      },
      prefix,
    );
    await reader.getOrLoad("product:1", async () => ({ version: 3 }), opts); // scripts loaded
    await h.resetCounter();

    const hit = await reader.getOrLoad("product:1", async () => ({ version: 3 }), opts);
    expect(hit.status).toBe("HIT");
    expect(errors).toEqual([]);
    const stats = await h.gatewayStats();
    expect(stats.requests).toBe(1);
    expect(stats.calls).toEqual({ readOnly: 1, writing: 0, other: 0 });
    // Counted and sampled all the same, in the isolate.
    expect((await reader.stats()).hits).toBe(2);
    expect((await reader.hotKeys(1))[0]).toEqual({ key: "product:1", score: 2 });
  });

  it("a miss: the read-only look finds nothing, the writing acquire takes the lease, then the fill", async () => {
    const prefix = prefixOf();
    const cache = h.cache({ telemetry: { isolate: new IsolateTelemetry(), ...quiet } }, prefix);
    await cache.set("warm", 1); // scripts loaded
    await h.resetCounter();
    const miss = await cache.getOrLoad("cold", async () => "v", {
      ...noEarly,
      consistency: "replica",
    });
    expect(miss.status).toBe("MISS");
    const stats = await h.gatewayStats();
    // hit.lua (EVALSHA_RO), acquire.lua, fill.lua
    expect(stats.calls).toEqual({ readOnly: 1, writing: 2, other: 0 });
  });

  it("the hit script is flagged no-writes: Redis refuses to run a writing script the same way", async () => {
    // EVALSHA_RO of the writing acquire script is refused outright (its shebang lacks
    // no-writes), which is what would happen to a hit script that tried to write.
    await h.redis.scriptLoad(acquireScript.source).catch(() => undefined);
    await expect(
      h.redis.evalshaRo(
        acquireScript.sha1,
        ["x:e:k", "x:l:k", "x:tb"],
        ["t", 1000, "0", "0", "0", "[]", 0],
      ),
    ).rejects.toThrow(/write|read-only|not allowed/i);
    expect(hitScript.source.split("\n")[0]).toBe("#!lua flags=no-writes,allow-key-locking");
  });
});

describe("flushed off the response path", () => {
  it("a due flush goes to waitUntil and is not awaited by the hit; it lands later", async () => {
    const held = gate<void>();
    let flushes = 0;
    // Holds every stats flush until the test releases it.
    const holding: ScriptClient = {
      evalsha: async (sha, keys, args) => {
        if (sha === statsFlushScript.sha1) {
          flushes++;
          await held.promise;
        }
        return h.redis.evalsha(sha, keys, args);
      },
      eval: (script, keys, args) => h.redis.eval(script, keys, args),
    };
    const prefix = prefixOf();
    const isolate = new IsolateTelemetry({ shard: 2 });
    const cache = h.cache({ redis: holding, telemetry: { isolate, flushIntervalMs: 0 } }, prefix);
    await cache.set("k", "v");
    const background: Promise<unknown>[] = [];
    const hit = await cache.getOrLoad("k", async () => "x", {
      ...noEarly,
      waitUntil: (p) => background.push(p),
    });
    // The hit answered while its flush is still held.
    expect(hit.status).toBe("HIT");
    expect(flushes).toBe(1);
    expect(background).toHaveLength(1);

    held.open();
    await Promise.all(background);
    await cache.flushStats(); // the hit itself, counted after the flush had drained
    const shard = await h.redis.hgetall<Record<string, number>>(`${prefix}:stats:2`);
    expect(Number(shard?.hits)).toBe(1);
    expect(Number(shard?.reads)).toBe(1);
  });

  it("a due flush is sent after the read's own request has answered, never beside it", async () => {
    // The order in which requests left the client, and whether the read was still out when the
    // flush left. Before, the flush left first and the read it rode on waited for both.
    const order: string[] = [];
    let readsOut = 0;
    let flushBesideRead = false;
    const recording: ScriptClient = {
      evalsha: async (sha, keys, args) => {
        if (sha === statsFlushScript.sha1) {
          order.push("flush");
          if (readsOut > 0) flushBesideRead = true;
          return h.redis.evalsha(sha, keys, args);
        }
        const read = sha === hitScript.sha1 || sha === acquireScript.sha1;
        order.push(read ? "read" : "other"); // other: the miss's fill, in waitUntil
        if (!read) return h.redis.evalsha(sha, keys, args);
        readsOut++;
        try {
          return await h.redis.evalsha(sha, keys, args);
        } finally {
          readsOut--;
        }
      },
      eval: (script, keys, args) => h.redis.eval(script, keys, args),
    };
    const prefix = prefixOf();
    const isolate = new IsolateTelemetry({ shard: 3 });
    await h.cache({ telemetry: { isolate: new IsolateTelemetry(), ...quiet } }, prefix).set("k", 1);
    const cache = h.cache({ redis: recording, telemetry: { isolate, flushIntervalMs: 0 } }, prefix);
    const background: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => background.push(p);
    const hit = await cache.getOrLoad("k", async () => 2, { ...noEarly, waitUntil });
    const miss = await cache.getOrLoad("absent", async () => 3, { ...noEarly, waitUntil });
    const peek = await cache.get("k");
    await Promise.all(background);
    expect([hit.status, miss.status, peek?.status]).toEqual(["HIT", "MISS", "HIT"]);
    // Every call flushed (the interval is 0), each time after its read.
    expect(order.filter((o) => o === "flush")).toHaveLength(3);
    expect(order[0]).toBe("read");
    expect(flushBesideRead).toBe(false);
    const shard = await h.redis.hgetall<Record<string, number>>(`${prefix}:stats:3`);
    expect(Number(shard?.reads)).toBe(3);
  });

  it("flushes at most once per interval, or when the batch is large", async () => {
    const calls = new Map<string, number>();
    const counting = countingClient(calls);
    const prefix = prefixOf();
    const cache = h.cache(
      { redis: counting, telemetry: { isolate: new IsolateTelemetry(), ...quiet } },
      prefix,
    );
    await cache.set("k", "v");
    for (let i = 0; i < 20; i++) await cache.getOrLoad("k", async () => "x", noEarly);
    await cache.settle();
    expect(calls.get("read")).toBe(20);
    expect(calls.get("flush")).toBeUndefined(); // nothing flushed within the interval

    // A small batch limit: distinct sampled keys fill it, and one flush carries them all.
    calls.clear();
    const big = h.cache(
      {
        redis: counting,
        telemetry: { isolate: new IsolateTelemetry(), flushIntervalMs: 3_600_000, maxBatch: 12 },
        hotKeys: { sampleRate: 1 },
      },
      prefix,
    );
    // Written by another isolate's engine: `big` counts only its reads.
    const writer = h.cache({ telemetry: { isolate: new IsolateTelemetry(), ...quiet } }, prefix);
    for (let i = 0; i < 10; i++) await writer.set(`k${i}`, i);
    // 3 counters (reads, read_requests, hits) + 9 sampled keys reach 12 before the 10th read.
    for (let i = 0; i < 10; i++) await big.getOrLoad(`k${i}`, async () => -1, noEarly);
    await big.getOrLoad("k0", async () => -1, noEarly);
    await big.settle();
    expect(calls.get("read")).toBe(11);
    expect(calls.get("flush")).toBe(1);
    const top = await h
      .cache({ telemetry: { isolate: new IsolateTelemetry() } }, prefix)
      .hotKeys(20);
    // k0..k8 flushed; k9 and the second k0 are still pending in `big`'s isolate.
    expect(top.map((t) => t.key).sort()).toEqual(
      Array.from({ length: 9 }, (_, i) => `k${i}`).sort(),
    );
  });

  it("Redis down: a full batch starts one failing flush per interval, not one per request", async () => {
    const calls = new Map<string, number>();
    const prefix = prefixOf();
    const isolate = new IsolateTelemetry({ shard: 2 });
    // A batch of 3 is full after the first read (reads, read_requests, hits, ...): while Redis
    // is up, every read flushes.
    const cache = h.cache(
      {
        redis: countingClient(calls),
        telemetry: { isolate, flushIntervalMs: 3_600_000, maxBatch: 3 },
        onError: () => undefined,
      },
      prefix,
    );
    await cache.set("k", "v");
    await h.faults({ failRate: 1 });
    try {
      for (let i = 0; i < 10; i++) {
        const read = await cache.getOrLoad("k", async () => "from the source", noEarly);
        expect(read.status).toBe("BYPASS");
        await cache.settle();
      }
    } finally {
      await h.clearFaults();
    }
    // Ten reads bypassed a down Redis with a full batch: one flush was tried, then none until
    // the interval passes (the old rule tried one per read: ten failing requests more).
    expect(calls.get("read")).toBe(10);
    expect(calls.get("flush")).toBe(1);
    expect(isolate.lastFlushFailed).toBe(true);
    // Nothing was lost: a flush now sends all ten reads, and the batch rule applies again.
    await cache.flushStats();
    expect(isolate.lastFlushFailed).toBe(false);
    const other = h.cache({ telemetry: { isolate: new IsolateTelemetry({ shard: 5 }) } }, prefix);
    expect((await other.stats()).reads).toBe(10);
    expect((await other.stats()).bypass).toBe(10);
  });

  it("a lost flush (Redis down) keeps its counters and samples; the next flush sends them once", async () => {
    const prefix = prefixOf();
    const isolate = new IsolateTelemetry({ shard: 1 });
    // decay 1 for both: a minute boundary between the reads and hotKeys() would halve the score.
    const hotKeys = { sampleRate: 1, decay: 1 };
    const cache = h.cache({ telemetry: { isolate, ...quiet }, hotKeys }, prefix);
    await cache.set("k", "v");
    for (let i = 0; i < 3; i++) await cache.getOrLoad("k", async () => "x", noEarly);
    await h.faults({ failCount: 1 });
    await expect(cache.flushStats()).rejects.toThrow();
    await h.clearFaults();
    // Another isolate sees nothing yet; this one still sees its own.
    const other = h.cache(
      { telemetry: { isolate: new IsolateTelemetry({ shard: 4 }) }, hotKeys },
      prefix,
    );
    expect((await other.stats()).hits).toBe(0);
    expect((await cache.stats()).hits).toBe(3);

    await cache.flushStats();
    await cache.flushStats(); // nothing left: no double count
    expect((await other.stats()).hits).toBe(3);
    expect(await other.hotKeys(1)).toEqual([{ key: "k", score: 3 }]);
  });
});

describe("sharded", () => {
  it("several isolates write several shards; stats() and hotKeys() merge them in one request each", async () => {
    const prefix = prefixOf();
    const shards = [0, 3, 5];
    const isolates = shards.map((shard) =>
      h.cache(
        {
          telemetry: { isolate: new IsolateTelemetry({ shard }), ...quiet },
          hotKeys: { sampleRate: 1 },
        },
        prefix,
      ),
    );
    await isolates[0]?.set("a", 1);
    await isolates[0]?.set("b", 2);
    for (const [i, cache] of isolates.entries()) {
      for (let n = 0; n <= i; n++) await cache.getOrLoad("a", async () => 0, noEarly);
      await cache.getOrLoad("b", async () => 0, noEarly);
      await cache.flushStats();
    }
    // Each isolate's counts sit in its own shard: no key received every increment.
    for (const [i, shard] of shards.entries()) {
      const fields = await h.redis.hgetall<Record<string, number>>(`${prefix}:stats:${shard}`);
      expect(Number(fields?.hits)).toBe(i + 2);
    }
    expect(await h.redis.exists(`${prefix}:stats`)).toBe(0);

    const reader = h.cache({ telemetry: { isolate: new IsolateTelemetry({ shard: 7 }) } }, prefix);
    await reader.stats(); // scripts loaded
    await h.resetCounter();
    const stats = await reader.stats();
    expect(stats.hits).toBe(2 + 3 + 4);
    expect(stats.writes).toBe(2); // counted by fill.lua, in isolate 0's shard
    const top = await reader.hotKeys(2);
    expect(top).toEqual([
      { key: "a", score: 1 + 2 + 3 },
      { key: "b", score: 3 },
    ]);
    const gateway = await h.gatewayStats();
    expect(gateway.requests).toBe(2);
    expect(gateway.scripts.globalLock).toBe(0); // both flagged allow-key-locking
  });

  it("the default isolate telemetry picks its shard at random among N", async () => {
    const picked = new Set(
      Array.from({ length: 64 }, () => new IsolateTelemetry({ shards: 8 }).shard),
    );
    expect(picked.size).toBeGreaterThan(1);
    for (const shard of picked) expect(shard).toBeGreaterThanOrEqual(0);
    for (const shard of picked) expect(shard).toBeLessThan(8);
  });
});

describe("bounded over prefixes (an app may give each tenant its own)", () => {
  /** Engines of MAX_TELEMETRY_PREFIXES other prefixes: building them is enough to push one out. */
  const crowdOut = () => {
    for (let i = 0; i < MAX_TELEMETRY_PREFIXES; i++) h.cache({}, prefixOf());
  };
  const hitsInRedis = async (prefix: string) => {
    const reader = h.cache({ telemetry: { isolate: new IsolateTelemetry() } }, prefix);
    return (await reader.stats()).hits;
  };

  it("a prefix pushed out with counts pending has them sent under its own prefix by the next due flush", async () => {
    const tenant = prefixOf();
    const a = h.cache({ telemetry: quiet }, tenant);
    await a.set("k", "v");
    await a.getOrLoad("k", async () => "x", noEarly);
    await a.getOrLoad("k", async () => "x", noEarly);
    expect(await hitsInRedis(tenant)).toBe(0); // pending in the isolate
    crowdOut();

    const other = prefixOf();
    const b = h.cache({ telemetry: { flushIntervalMs: 0 } }, other);
    await b.set("k", "v");
    const background: Promise<unknown>[] = [];
    await b.getOrLoad("k", async () => "x", { ...noEarly, waitUntil: (p) => background.push(p) });
    expect(background.length).toBeGreaterThanOrEqual(2); // b's own flush and the tenant's
    await Promise.all(background);
    expect(await hitsInRedis(tenant)).toBe(2);
    expect(await h.redis.keys(`${other}:stats:*`)).toHaveLength(1); // not mixed into b's
  });

  it("an engine of the pushed-out prefix built before that flush takes its counts back", async () => {
    const tenant = prefixOf();
    const a = h.cache({ telemetry: quiet }, tenant);
    await a.set("k", "v");
    await a.getOrLoad("k", async () => "x", noEarly);
    crowdOut();
    const again = h.cache({ telemetry: quiet }, tenant);
    expect((await again.stats()).hits).toBe(1); // pending here, not lost
    expect(await hitsInRedis(tenant)).toBe(0);
    await again.flushStats();
    expect(await hitsInRedis(tenant)).toBe(1);
  });
});

describe("a flush that never answers (its request cancelled)", () => {
  it("holds no other request: stats() answers within the flush wait, and the isolate's flushes resume once it is given up", async () => {
    const isolate = new IsolateTelemetry({ shard: 0, now: 0 });
    const prefix = prefixOf();
    // Request 1's stats flush never answers: in workerd, a cancelled request's I/O never does.
    const stuck: ScriptClient = {
      evalsha: (sha, keys, args) =>
        sha === statsFlushScript.sha1 ? new Promise(() => {}) : h.redis.evalsha(sha, keys, args),
      eval: (script, keys, args) => h.redis.eval(script, keys, args),
    };
    const first = h.cache({ redis: stuck, telemetry: { isolate, flushIntervalMs: 10 } }, prefix);
    await first.getOrLoad("k", async () => 1, noEarly); // a flush is due: it starts, and hangs
    expect(isolate.flushing()).toBe(true);
    const second = h.cache({ telemetry: { isolate, flushIntervalMs: 10 } }, prefix);
    await second.getOrLoad("k", async () => 1, noEarly);
    const started = Date.now();
    const stats = await Promise.race([second.stats(), sleep(5_000).then(() => "hung" as const)]);
    expect(stats).not.toBe("hung");
    expect(Date.now() - started).toBeLessThan(FLUSH_WAIT_MS + 1_000);
  });

  it("is given up after FLUSH_LOST_MS: its counts return to the pending ones, and a late answer adds nothing", () => {
    const isolate = new IsolateTelemetry({ shard: 0, now: 0 });
    isolate.add("hits", 3);
    const batch = isolate.startFlush(1_000);
    expect(batch).not.toBeNull();
    expect(isolate.pendingCounters().get("hits")).toBeUndefined();
    expect(isolate.flushing(1_000 + FLUSH_LOST_MS - 1)).toBe(true);
    expect(isolate.due(1_000 + FLUSH_LOST_MS - 1, 10, 256)).toBe(false);
    expect(isolate.flushing(1_000 + FLUSH_LOST_MS)).toBe(false);
    expect(isolate.pendingCounters().get("hits")).toBe(3);
    // The lost flush's late answers, either way, change nothing.
    isolate.endFlush(batch as NonNullable<typeof batch>, false);
    expect(isolate.pendingCounters().get("hits")).toBe(3);
    isolate.endFlush(batch as NonNullable<typeof batch>, true);
    expect(isolate.pendingCounters().get("hits")).toBe(3);
  });
});
