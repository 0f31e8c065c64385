import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EdgeCache } from "../../src/cache";
import * as engineScripts from "../../src/cache/scripts";
import { type OwnRedis, startOwnRedis } from "../../tools/lib/own-redis";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * Which of the engine's Lua scripts would break under `#!lua flags=allow-key-locking`, found
 * by running them for real: the gateway's audit mode (`auditKeys`) wraps every unflagged
 * script in the same key check strict mode uses, but logs each violation to the
 * redis-server log instead of failing, so the engine behaves exactly as it does today.
 *
 * Flagged scripts are checked strictly at the same time (the gateway's default): one that
 * touched an undeclared key would fail, and the engine's onError below throws. The expected
 * table is a ratchet: a new violation fails this test.
 */
const TOKEN = `gw-audit-${randomBytes(6).toString("hex")}`;
const PREFIX = `audit${randomBytes(3).toString("hex")}`;

let server: OwnRedis;
let gateway: Gateway;

const scriptNames = new Map<string, string>(
  Object.values(engineScripts)
    .filter((s): s is engineScripts.LuaScript => typeof s === "object" && s !== null && "sha1" in s)
    .map((s) => [s.sha1, s.name]),
);

/** `gateway-key-audit <sha> <message>` lines -> script name -> sorted, normalized messages. */
function findings(log: string): Record<string, string[]> {
  const out: Record<string, Set<string>> = {};
  for (const match of log.matchAll(/gateway-key-audit ([0-9a-f]{40}) (.*)$/gm)) {
    const name = scriptNames.get(match[1] ?? "") ?? `unknown script ${match[1]}`;
    const message = (match[2] ?? "")
      .replaceAll(PREFIX, "{prefix}")
      .replace(/:hot:\d+/g, ":hot:{window}")
      .replace(/^ERR script touched (undeclared key '[^']*').*$/, "$1")
      .replace(/^ERR script ran (\S+), a database-wide command.*$/, "database-wide $1");
    out[name] ??= new Set();
    out[name].add(message);
  }
  return Object.fromEntries(
    Object.entries(out)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, set]) => [name, [...set].sort()]),
  );
}

beforeAll(async () => {
  server = await startOwnRedis();
  gateway = await startGateway({
    redisUrl: server.url,
    tokens: { [TOKEN]: { db: 0 } },
    auditKeys: true,
  });
});

afterAll(async () => {
  await gateway?.close();
  await server?.stop();
});

describe("engine scripts under allow-key-locking (audit)", () => {
  it("lists every key each engine script touches outside KEYS", async () => {
    const redis = new Redis({ url: gateway.url, token: TOKEN, enableTelemetry: false });
    // Records which scripts the engine ran (by SHA), then calls the real client.
    const ran = new Set<string>();
    const recorder = {
      evalsha: (sha: string, keys: string[], args: unknown[]) => {
        ran.add(scriptNames.get(sha) ?? sha);
        return redis.evalsha(sha, keys, args);
      },
      eval: (script: string, keys: string[], args: unknown[]) => redis.eval(script, keys, args),
    };
    const cache = new EdgeCache({
      redis: recorder,
      prefix: PREFIX,
      hotKeys: { sampleRate: 1 },
      onError: (error) => {
        throw error;
      },
    });
    const product = { id: 1, category: "c1", version: 1 };
    const options = {
      tags: ["catalogue"],
      tagsOf: (p: typeof product) => [`category:${p.category}`],
      versionKey: "product:1",
      versionOf: (p: typeof product) => p.version,
    };
    // Every engine operation once: miss + fill, hit, write-through, versions, tags, purge,
    // the admin/warmer reads and the stats flush.
    expect((await cache.getOrLoad("p:1", async () => product, options)).value).toEqual(product);
    expect((await cache.getOrLoad("p:1", async () => product, options)).value).toEqual(product);
    await cache.get("p:1", { versionKey: "product:1" });
    await cache.writeThrough("p:1", { ...product, version: 2 }, 2, options);
    await cache.bumpVersion("product", 1, 3);
    await cache.invalidateTags("category:c1");
    await cache.getOrLoad("p:2", async () => ({ ...product, id: 2 }), {
      ...options,
      versionKey: "product:2",
    });
    await cache.invalidate("p:2");
    await cache.apply({ keys: ["p:1"], tags: ["catalogue"], versions: { "product:1": 4 } });
    await cache.getOrLoad("p:3", async () => 3, { tags: ["catalogue"] });
    // A load slower than its lease keeps it alive (extend), with its version key's "" mark.
    await cache.getOrLoad(
      "slow:5",
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 120));
        return { id: 5, version: 1 };
      },
      {
        versionKey: "product:5",
        versionOf: (p) => p.version,
        leaseTtl: 90,
        loadTimeout: 1_000,
      },
    );
    // A failing loader gives its lease back (release).
    await expect(
      cache.getOrLoad("p:4", async () => Promise.reject(new Error("loader down"))),
    ).rejects.toThrow("loader down");
    await cache.inspect("p:3");
    await cache.freshness(["p:3"]);
    await cache.hotKeys(10);
    await cache.flushStats();
    await cache.stats();
    await cache.purgePattern("p:*");
    await cache.settle();

    // Every engine script ran at least once, so a clean one is clean for a reason.
    expect([...ran].sort()).toEqual([...scriptNames.values()].sort());
    const found = findings(server.output());
    // Printed for the engine rewrite; the assertion keeps it honest.
    console.log(
      `engine scripts that would violate allow-key-locking:\n${JSON.stringify(found, null, 2)}`,
    );
    expect(found).toEqual(EXPECTED);
  });
});

/**
 * Every engine script but one is flagged `allow-key-locking` and runs under the gateway's
 * strict key check (a violation fails the script, and the engine's onError above throws), so
 * they never appear here. The one unflagged script, audited: a pattern purge cannot know its
 * keys (SCAN, then each match), so it runs under Upstash's global lock, as an admin operation.
 */
const EXPECTED: Record<string, string[]> = {
  purge: ["database-wide SCAN", "undeclared key '{prefix}:e:p:3'"],
};
