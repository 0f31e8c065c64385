import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type OwnRedis, startOwnRedis } from "../../tools/lib/own-redis";
import { gatewayControl } from "../../tools/upstash-gateway/control";
import { KEY_SPECS, sha1 } from "../../tools/upstash-gateway/scripts";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * Upstash's Lua shebang flags through the gateway, driven by the real @upstash/redis client:
 * `allow-key-locking` is accepted (Redis 7 alone rejects it), a flagged script that touches a
 * key outside KEYS fails, and the stats route counts global-lock scripts and read/write calls.
 * Its own redis-server, so nothing here races the shared Redis or other test files.
 */
const TOKEN = `gw-scripts-${randomBytes(6).toString("hex")}`;
const LAX_TOKEN = `gw-lax-${randomBytes(6).toString("hex")}`;

let server: OwnRedis;
let gateway: Gateway;
let lax: Gateway;
let direct: IORedis;
let redis: Redis;

const KEYED = "#!lua flags=allow-key-locking\n";
const READ_ONLY_KEYED = "#!lua flags=no-writes,allow-key-locking\n";
const UNDECLARED =
  /script touched undeclared key 'k:other' \(allow-key-locking requires every key in KEYS\)/;

interface EmulationStats {
  scripts: { globalLock: number; keyLocked: number };
  calls: { readOnly: number; writing: number; other: number };
  served: { primary: number; replica: number };
}

function stats(): Promise<EmulationStats> {
  return gatewayControl<EmulationStats>(gateway.url, TOKEN, "stats");
}

/** A unique script text per run: the script cache starts cold for it. */
const fresh = (body: string, shebang = KEYED) =>
  `${shebang}-- ${randomBytes(6).toString("hex")}\n${body}`;

beforeAll(async () => {
  server = await startOwnRedis();
  direct = new IORedis(server.url);
  gateway = await startGateway({ redisUrl: server.url, tokens: { [TOKEN]: { db: 0 } } });
  lax = await startGateway({
    redisUrl: server.url,
    tokens: { [LAX_TOKEN]: { db: 0 } },
    strictKeys: false,
  });
  redis = new Redis({ url: gateway.url, token: TOKEN });
});

afterAll(async () => {
  await gateway?.close();
  await lax?.close();
  await direct?.quit();
  await server?.stop();
});

beforeEach(async () => {
  await gatewayControl(gateway.url, TOKEN, "reset", {});
  await direct.flushdb();
});

describe("shebang flags", () => {
  it("accepts allow-key-locking, which Redis 7 alone rejects", async () => {
    const source = `${KEYED}return redis.call('INCRBY', KEYS[1], ARGV[1])`;
    await expect(direct.eval(source, 1, "k:a", "2")).rejects.toThrow(/Unexpected flag/);
    expect(await redis.eval(source, ["k:a"], ["2"])).toBe(2);
    expect(await direct.get("k:a")).toBe("2");
  });

  it("still lets Redis reject flags that neither Upstash nor Redis know", async () => {
    await expect(redis.eval("#!lua flags=bogus\nreturn 1", [], [])).rejects.toThrow(
      /Unexpected flag in script shebang: bogus/,
    );
  });

  it("runs EVALSHA of the original text's SHA after EVAL and after SCRIPT LOAD", async () => {
    const source = fresh("return redis.call('INCR', KEYS[1])");
    await expect(redis.evalsha(sha1(source), ["k:a"], [])).rejects.toThrow(/NOSCRIPT/);
    expect(await redis.eval(source, ["k:a"], [])).toBe(1);
    expect(await redis.evalsha(sha1(source), ["k:a"], [])).toBe(2);

    const loaded = fresh("return redis.call('INCR', KEYS[1])");
    expect(await redis.scriptLoad(loaded)).toBe(sha1(loaded));
    expect(await redis.scriptExists(sha1(loaded))).toEqual([1]);
    expect(await redis.evalsha(sha1(loaded), ["k:a"], [])).toBe(3);
  });

  it("works with the client's EVALSHA -> NOSCRIPT -> EVAL fallback (createScript)", async () => {
    const script = redis.createScript<number>(fresh("return redis.call('INCR', KEYS[1])"));
    expect(await script.exec(["k:a"], [])).toBe(1);
    expect(await script.exec(["k:a"], [])).toBe(2);
    const ro = redis.createScript<string, true>(
      fresh("return redis.call('GET', KEYS[1])", READ_ONLY_KEYED),
      {
        readonly: true,
      },
    );
    expect(await ro.exec(["k:a"], [])).toBe(2);
  });

  it("keeps Lua's line numbers in errors of a rewritten script", async () => {
    const body = "local x = 1\n\nlocal t = nil\nreturn t.field";
    // What Redis itself reports for the same body under a shebang it knows.
    const own = await direct.eval(`#!lua\n${body}`, 0).catch((e: Error) => e.message);
    const line = /user_script:(\d+):/.exec(String(own))?.[1];
    expect(line).toBe("5"); // the shebang is line 1
    await expect(redis.eval(`${KEYED}${body}`, [], [])).rejects.toThrow(`user_script:${line}:`);
    // A failing redis.call keeps Redis's message; its position is the prelude's line 2
    // (documented limitation: Redis reports the frame that called it).
    const bad = `${KEYED}local x = 1\nreturn redis.call('INCR', KEYS[1], 'extra')`;
    await expect(redis.eval(bad, ["k:a"], [])).rejects.toThrow(
      /ERR Wrong number of args calling Redis command from script/,
    );
  });

  it("leaves scripts without the flag byte for byte as sent", async () => {
    const source = fresh("return 7", "");
    expect(await redis.eval(source, [], [])).toBe(7);
    expect(await direct.script("EXISTS", sha1(source))).toEqual([1]);
  });
});

describe("key declaration (allow-key-locking)", () => {
  it("fails a script that touches a key outside KEYS, before it writes", async () => {
    const source = `${KEYED}redis.call('SET', KEYS[1], 'x')\nredis.call('SET', 'k:other', 'y')\nreturn 1`;
    await expect(redis.eval(source, ["k:a"], [])).rejects.toThrow(UNDECLARED);
    // Redis scripts are not transactions: the first SET stays, the undeclared one never ran.
    expect(await direct.get("k:other")).toBeNull();
  });

  it("catches undeclared reads, redis.pcall, and a script that swallows the error", async () => {
    const reads = `${READ_ONLY_KEYED}return redis.call('GET', 'k:other')`;
    await expect(redis.evalRo(reads, ["k:a"], [])).rejects.toThrow(UNDECLARED);
    const viaPcall = `${KEYED}return redis.pcall('EXISTS', KEYS[1], 'k:other')`;
    await expect(redis.eval(viaPcall, ["k:a"], [])).rejects.toThrow(UNDECLARED);
    const swallowed = `${KEYED}pcall(redis.call, 'GET', 'k:other')\nreturn 'fine'`;
    await expect(redis.eval(swallowed, ["k:a"], [])).rejects.toThrow(UNDECLARED);
  });

  it("checks movable key positions (ZUNION numkeys) and refuses database-wide commands", async () => {
    await direct.zadd("k:z1", 1, "a");
    await direct.zadd("k:z2", 2, "b");
    const union = `${READ_ONLY_KEYED}return redis.call('ZUNION', 2, KEYS[1], ARGV[1])`;
    expect(await redis.evalRo(union, ["k:z1", "k:z2"], ["k:z2"])).toEqual(["a", "b"]);
    await expect(redis.evalRo(union, ["k:z1"], ["k:z2"])).rejects.toThrow(/undeclared key 'k:z2'/);
    const wide = `${READ_ONLY_KEYED}return redis.call('KEYS', '*')`;
    await expect(redis.evalRo(wide, ["k:a"], [])).rejects.toThrow(/database-wide command/);
  });

  it("lets scripts that declare every key they touch run, multi-key commands included", async () => {
    const source = `${KEYED}redis.call('MSET', KEYS[1], ARGV[1], KEYS[2], ARGV[2])\nreturn redis.call('MGET', KEYS[1], KEYS[2])`;
    expect(await redis.eval(source, ["k:a", "k:b"], ["1", "2"])).toEqual([1, 2]);
    const keyless = `${KEYED}return redis.call('TIME')[1] ~= nil and 1 or 0`;
    expect(await redis.eval(keyless, [], [])).toBe(1);
  });

  it("reads key positions of listed commands the way Redis's COMMAND states them", async () => {
    for (const [name, spec] of Object.entries(KEY_SPECS)) {
      const [info] = (await direct.call("COMMAND", "INFO", name)) as [unknown[]];
      const flags = (info[2] as string[]).map(String);
      expect({ name, spec: info.slice(3, 6), movable: flags.includes("movablekeys") }).toEqual({
        name,
        spec: [...spec],
        movable: false,
      });
    }
    // Listed commands take the argument path: an undeclared key in any position still fails.
    const lastOfMany = `${KEYED}return redis.call('DEL', KEYS[1], KEYS[2], 'k:other')`;
    await expect(redis.eval(lastOfMany, ["k:a", "k:b"], [])).rejects.toThrow(UNDECLARED);
    const msetValue = `${KEYED}return redis.call('MSET', KEYS[1], 'k:other', 'k:other', 'v')`;
    await expect(redis.eval(msetValue, ["k:a"], [])).rejects.toThrow(UNDECLARED);
    const numericKey = `${KEYED}return redis.call('GET', 12)`;
    await expect(redis.eval(numericKey, ["k:a"], [])).rejects.toThrow(/undeclared key '12'/);
    // MSET's values are not keys: 'k:other' as a value is fine.
    const msetOk = `${KEYED}return redis.call('MSET', KEYS[1], 'k:other')`;
    expect(await redis.eval(msetOk, ["k:a"], [])).toBe("OK");
  });

  it("leaves unflagged scripts free to build key names (they take the global lock)", async () => {
    const source = "redis.call('SET', 'k:built:' .. ARGV[1], 'x') return 1";
    expect(await redis.eval(source, [], ["1"])).toBe(1);
    expect(await direct.get("k:built:1")).toBe("x");
  });

  it("does not check keys when strictKeys is off, but still accepts the flag", async () => {
    const laxClient = new Redis({ url: lax.url, token: LAX_TOKEN });
    const source = `${KEYED}return redis.call('SET', 'k:other', 'y')`;
    expect(await laxClient.eval(source, ["k:a"], [])).toBe("OK");
    expect(await direct.get("k:other")).toBe("y");
  });

  it("in audit mode logs what an unflagged script would violate, and runs it unchanged", async () => {
    const audit = await startGateway({
      redisUrl: server.url,
      tokens: { [LAX_TOKEN]: { db: 0 } },
      auditKeys: true,
    });
    try {
      const client = new Redis({ url: audit.url, token: LAX_TOKEN });
      const source = fresh(
        "redis.call('SET', KEYS[1], 'a')\nreturn redis.call('GET', 'k:other')",
        "",
      );
      expect(await client.eval(source, ["k:a"], [])).toBeNull();
      expect(await direct.get("k:a")).toBe("a");
      expect(server.output()).toContain(
        `gateway-key-audit ${sha1(source)} ERR script touched undeclared key 'k:other'`,
      );
    } finally {
      await audit.close();
    }
  });

  it("lets Redis enforce no-writes on a flagged script", async () => {
    const source = `${READ_ONLY_KEYED}return redis.call('SET', KEYS[1], 'x')`;
    await expect(redis.eval(source, ["k:a"], [])).rejects.toThrow(
      /Write commands are not allowed from read-only scripts/,
    );
    expect(await direct.get("k:a")).toBeNull();
  });
});

describe("counters", () => {
  it("counts scripts by lock and calls as read-only or writing", async () => {
    const plain = fresh("return redis.call('GET', KEYS[1])", "");
    const keyed = fresh("return redis.call('GET', KEYS[1])", READ_ONLY_KEYED);
    await redis.set("k:a", "1"); // writing
    await redis.get("k:a"); // read-only
    await redis.eval(plain, ["k:a"], []); // writing (EVAL may write), global lock
    await redis.evalRo(keyed, ["k:a"], []); // read-only, key-locked
    await redis.evalshaRo(sha1(keyed), ["k:a"], []); // read-only, key-locked
    await expect(redis.evalsha("0".repeat(40), [], [])).rejects.toThrow(/NOSCRIPT/); // did not run
    // Inside MULTI/EXEC Upstash runs every script under the global lock.
    const tx = redis.multi();
    tx.evalRo(keyed, ["k:a"], []);
    await tx.exec();
    const s = await stats();
    expect(s.scripts).toEqual({ globalLock: 2, keyLocked: 2 });
    expect(s.calls).toEqual({ readOnly: 4, writing: 3, other: 0 });
    expect(s.served).toEqual({ primary: expect.any(Number), replica: 0 });
  });
});
