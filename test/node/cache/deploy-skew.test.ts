import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enginePath, extractEngine } from "../../../bench/lib/revision";
import * as today from "../../../src/cache";
import { type OwnRedis, startOwnRedis } from "../../../tools/lib/own-redis";
import { type Gateway, startGateway } from "../../../tools/upstash-gateway/server";
import { type CacheHarness, gate, useWarmHarness } from "./harness";

/**
 * A deploy runs two releases side by side (a gradual deployment for minutes to hours; a plain
 * `wrangler deploy` lets the old release's requests, queue batches and cron ticks finish), and
 * Redis keeps whatever the previous release wrote. Here the engine of an earlier release (its
 * `src/cache`, extracted from git as `npm run bench -- --against` does) and today's share one
 * prefix on real Redis, each as its own isolate, and every entry one writes must be served by
 * the other only while valid, and invalidated by either one's writes.
 *
 * The releases are the real format changes the entry hash went through:
 * - before `vk` (aaa02b3^): an entry did not record that it was filled under a version key;
 * - before `tk`/`tc` and `id` (eabefed^): no stored tag order, no counter string, no fill id.
 */
const RELEASES = [
  { rev: "aaa02b3^", what: "before vk", lacks: ["vk"] },
  { rev: "eabefed^", what: "before tk/tc/id/vk", lacks: ["tk", "tc", "id", "vk"] },
] as const;

type Engine = typeof today.EdgeCache;
interface Row {
  id: number;
  version: number;
  categoryId: number;
  name: string;
}

let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const old = new Map<
  string,
  {
    EdgeCache: Engine;
    FlightRegistry: typeof today.FlightRegistry;
    KnownEntries: typeof today.KnownEntries;
  }
>();
beforeAll(async () => {
  for (const { rev } of RELEASES) {
    const { sha } = extractEngine(rev);
    old.set(rev, await import(enginePath(sha)));
  }
}, 60_000);

/** An engine of `rev` (or today's) on `prefix`, as its own isolate. */
function engineOf(rev: string | "today", prefix: string): today.EdgeCache {
  if (rev === "today") return h.cache({}, prefix);
  const m = old.get(rev);
  if (!m) throw new Error(`no engine for ${rev}`);
  return new m.EdgeCache({
    redis: h.redis,
    prefix,
    onError: () => {},
    telemetry: { flushIntervalMs: 3_600_000 },
    flights: new m.FlightRegistry(),
    known: new m.KnownEntries(),
  });
}

const fresh = () => `sk${randomBytes(4).toString("hex")}`;

/** A product detail's options, as the app reads it (version key + tags known after loading). */
const detail = (id: number) => ({
  ttl: 60_000,
  staleTtl: 10_000,
  failSafe: true,
  versionKey: `product:${id}`,
  versionOf: (r: Row | null) => r?.version ?? 0,
  tagsOf: (r: Row | null) => (r ? [`category:${r.categoryId}`] : []),
  negativeTtl: 30_000,
  earlyRefresh: false as const,
});
/** A list page's options (own tags known before loading). */
const list = { ttl: 60_000, tags: ["products", "category:3"], earlyRefresh: false as const };

/** A loader over a mutable row that counts its calls. */
function source(row: Row | null) {
  const s = {
    row,
    loads: 0,
    load: async () => {
      s.loads++;
      return s.row === null ? null : { ...s.row };
    },
  };
  return s;
}

describe.each(RELEASES)("engine skew with the release $what ($rev)", ({ rev, lacks }) => {
  for (const [writer, reader] of [
    [rev, "today"],
    ["today", rev],
  ] as const) {
    const who = (r: string) => (r === "today" ? "today's" : "the previous");
    it(`entries ${who(writer)} release fills are served by ${who(reader)} while valid, never after either release's invalidation`, async () => {
      const prefix = fresh();
      const w = engineOf(writer, prefix);
      const r = engineOf(reader, prefix);

      // A versioned detail with a tag known only after loading.
      const p = source({ id: 1, version: 1, categoryId: 3, name: "one" });
      expect((await w.getOrLoad("product:1", p.load, detail(1))).status).toBe("MISS");
      // The entry really is in the writer's format: the previous release's lacks the fields.
      const fields = Object.keys((await h.redis.hgetall(`${prefix}:e:product:1`)) ?? {});
      if (writer === rev) for (const f of lacks) expect(fields).not.toContain(f);
      else expect(fields).toEqual(expect.arrayContaining([...lacks]));
      const hit = await r.getOrLoad("product:1", p.load, detail(1));
      expect([hit.status, hit.value?.name, p.loads]).toEqual(["HIT", "one", 1]);
      // The writer's release commits v2 and advances the version: the reader reloads.
      p.row = { id: 1, version: 2, categoryId: 3, name: "two" };
      await w.apply({ keys: [], versions: { "product:1": 2 } });
      const afterBump = await r.getOrLoad("product:1", p.load, detail(1));
      expect([afterBump.status, afterBump.value?.name]).toEqual(["MISS", "two"]);
      // The reader's entry, bumped through its category tag by the writer's release.
      p.row = { id: 1, version: 2, categoryId: 3, name: "two, renamed category" };
      await w.invalidateTags("category:3");
      const afterTag = await w.getOrLoad("product:1", p.load, detail(1));
      expect([afterTag.status, afterTag.value?.name]).toEqual(["MISS", "two, renamed category"]);
      // And back: the reader's release sees the writer's new fill, then its key delete.
      expect((await r.getOrLoad("product:1", p.load, detail(1))).status).toBe("HIT");
      p.row = { id: 1, version: 3, categoryId: 3, name: "three" };
      await r.apply({ keys: ["product:1"], versions: { "product:1": 3 } });
      const again = await w.getOrLoad("product:1", p.load, detail(1));
      expect([again.status, again.value?.name]).toEqual(["MISS", "three"]);

      // A negative entry ("not found") under the version the key had (none: 0).
      const n = source(null);
      await w.getOrLoad("product:9", n.load, detail(9));
      const absent = await r.getOrLoad("product:9", n.load, detail(9));
      expect([absent.status, absent.value, n.loads]).toEqual(["HIT", null, 1]);
      n.row = { id: 9, version: 1, categoryId: 3, name: "created" };
      await w.apply({ keys: ["product:9"], versions: { "product:9": 1 } });
      expect((await r.getOrLoad("product:9", n.load, detail(9))).value?.name).toBe("created");

      // A tagged list page.
      const l = source({ id: 0, version: 0, categoryId: 3, name: "page 1" });
      await w.getOrLoad("products:list:3", l.load, list);
      expect((await r.getOrLoad("products:list:3", l.load, list)).status).toBe("HIT");
      l.row = { id: 0, version: 0, categoryId: 3, name: "page 1 after a write" };
      await r.invalidateTags("products");
      const page = await w.getOrLoad("products:list:3", l.load, list);
      expect([page.status, page.value?.name]).toEqual(["MISS", "page 1 after a write"]);

      // Write-through (users): a newer version by either release replaces the other's entry,
      // an older one never does.
      const u = { versionKey: "user:1", ttl: 60_000, earlyRefresh: false as const };
      await w.writeThrough("user:1", { v: 4 }, 4, u);
      expect((await r.get("user:1", { versionKey: "user:1" }))?.value).toEqual({ v: 4 });
      expect((await r.writeThrough("user:1", { v: 3 }, 3, u)).written).toBe(false);
      await r.writeThrough("user:1", { v: 5 }, 5, u);
      expect((await w.get("user:1", { versionKey: "user:1" }))?.value).toEqual({ v: 5 });
    });

    it(`a load ${who(writer)} release has in flight is dropped by ${who(reader)} release's write`, async () => {
      const prefix = fresh();
      const loader = engineOf(writer, prefix);
      const other = engineOf(reader, prefix);
      const g = gate<Row>();
      const inFlight = loader.getOrLoad("product:5", g.load, detail(5));
      await g.started;
      // The other release commits v2 while the load (which read v1) runs, and applies it.
      await other.apply({ keys: ["product:5"], versions: { "product:5": 2 }, tags: ["products"] });
      g.open({ id: 5, version: 1, categoryId: 3, name: "v1, read before the write" });
      await inFlight;
      await loader.settle();
      const p = source({ id: 5, version: 2, categoryId: 3, name: "v2" });
      for (const engine of [other, loader]) {
        const read = await engine.getOrLoad("product:5", p.load, detail(5));
        expect(read.value?.name).toBe("v2");
      }
    });
  }
});

/**
 * The other side of adding a field: the release before it ignores it. `vk` (an entry filled
 * under a version key) made today's scripts refuse such an entry to a read that declares no
 * version key; the release before `vk` serves it to that read, after any number of version
 * advances. The app declares its version keys on every read, so it is not exposed; a release
 * that adds a field restricting who may be served cannot rely on the release before it (see
 * README "Deploy": a format level in the entry).
 */
it("a restricting field is ignored by the release before it: the pre-vk engine serves a vk entry to a read without a version key after a version advance", async () => {
  const prefix = fresh();
  const filler = engineOf("today", prefix);
  const previous = engineOf(RELEASES[0].rev, prefix);
  const p = source({ id: 3, version: 1, categoryId: 3, name: "v1" });
  await filler.getOrLoad("product:3", p.load, detail(3));
  await filler.apply({ versions: { "product:3": 2 } });
  expect(await filler.get("product:3")).toBeNull();
  expect((await previous.get("product:3"))?.value).toMatchObject({ name: "v1" });
});

/**
 * An entry no release of this project wrote (fields missing or in another encoding: what a
 * future release changing an existing field would leave) fails closed: the read answers the
 * loader's value as BYPASS, never the entry and never an error. It does not heal either: the
 * scripts fail before they can replace it, so every read of that key goes to the source, with
 * no lease, until the entry's own expiry.
 */
it("an entry the scripts cannot read is never served and never thrown: BYPASS until it expires", async () => {
  const prefix = fresh();
  const far = String(Date.now() + 3_600_000);
  const broken: Record<string, Record<string, string>> = {
    "no-fu": { v: '"cached"', ver: "", su: far, xu: far, tg: "" },
    "tg-not-json": { v: '"cached"', ver: "", fu: far, su: far, xu: far, tg: "{tags" },
  };
  for (const [key, fields] of Object.entries(broken)) {
    await h.redis.hset(`${prefix}:e:${key}`, fields);
    const engine = engineOf("today", prefix);
    for (let read = 0; read < 2; read++) {
      const result = await engine.getOrLoad(key, async () => "from the source");
      expect([key, result.status, result.value]).toEqual([key, "BYPASS", "from the source"]);
    }
  }
});

/**
 * Script SHAs: each release calls its own scripts by SHA-1, so two releases' scripts of one name
 * coexist in Redis' script cache. The cache is emptied by SCRIPT FLUSH, a restart and a failover
 * (redis.io NOSCRIPT; Upstash documents SCRIPT FLUSH as "EVALSHA calls fail with NOSCRIPT until
 * the scripts are loaded again"): both releases must fall back to EVAL once and go on. On a
 * private redis-server, since SCRIPT FLUSH empties the whole server's cache.
 */
describe("script cache flushed while two releases run", () => {
  let server: OwnRedis;
  let gateway: Gateway;
  let redis: Redis;
  let admin: IORedis;
  beforeAll(async () => {
    server = await startOwnRedis([]);
    const token = `sk-${randomBytes(6).toString("hex")}`;
    gateway = await startGateway({ port: 0, redisUrl: server.url, tokens: { [token]: { db: 0 } } });
    redis = new Redis({ url: gateway.url, token, enableTelemetry: false });
    admin = new IORedis(server.url, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    admin?.disconnect();
    await gateway?.close();
    await server?.stop();
  });

  it("both releases answer every call after SCRIPT FLUSH, one EVAL each, nothing served unchecked", async () => {
    const prefix = fresh();
    const m = old.get(RELEASES[0].rev);
    if (!m) throw new Error("no previous engine");
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    const mk = (E: Engine, F: typeof today.FlightRegistry, K: typeof today.KnownEntries) =>
      new E({
        redis,
        prefix,
        onError,
        telemetry: { flushIntervalMs: 3_600_000 },
        flights: new F(),
        known: new K(),
      });
    const prev = mk(m.EdgeCache, m.FlightRegistry, m.KnownEntries);
    const now = mk(today.EdgeCache, today.FlightRegistry, today.KnownEntries);
    const p = source({ id: 7, version: 1, categoryId: 3, name: "v1" });
    await prev.getOrLoad("product:7", p.load, detail(7));
    expect((await now.getOrLoad("product:7", p.load, detail(7))).status).toBe("HIT");
    expect(await admin.script("FLUSH")).toBe("OK");
    // Every script both releases use, after the flush.
    p.row = { id: 7, version: 2, categoryId: 3, name: "v2" };
    await prev.apply({ keys: ["product:7"], versions: { "product:7": 2 } });
    expect((await now.getOrLoad("product:7", p.load, detail(7))).value?.name).toBe("v2");
    await admin.script("FLUSH");
    expect((await prev.getOrLoad("product:7", p.load, detail(7))).status).toBe("HIT");
    await admin.script("FLUSH");
    await now.invalidateTags("category:3");
    p.row = { id: 7, version: 2, categoryId: 3, name: "v2, category renamed" };
    expect((await prev.getOrLoad("product:7", p.load, detail(7))).value?.name).toBe(
      "v2, category renamed",
    );
    expect(errors).toEqual([]);
  });
});
