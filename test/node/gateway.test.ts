import { createHash, randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { prng } from "../../db/prng";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * Drives the gateway with the real @upstash/redis client on its default options (base64
 * responses, auto-pipelining, read-your-writes), plus raw fetch for the wire details.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
// Its own DB pair (DB and DB + 1), settable so parallel test runs on one Redis do not collide.
const DB = Number(process.env.TEST_GATEWAY_DB ?? 13);
const TOKEN = `gw-test-${randomBytes(8).toString("hex")}`;
const OTHER_TOKEN = `gw-other-${randomBytes(8).toString("hex")}`;

let gateway: Gateway;
let direct: IORedis;
let redis: Redis;

interface Stats {
  requests: number;
  commands: number;
  byRoute: Record<"/" | "/pipeline" | "/multi-exec", number>;
}

async function raw(
  path: string,
  init: { method?: string; body?: string; token?: string | null; base64?: boolean } = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (init.base64) headers["upstash-encoding"] = "base64";
  const res = await fetch(`${gateway.url}${path}`, {
    method: init.method ?? "POST",
    headers,
    body: init.body,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const command = (path: string, cmd: unknown, base64 = false) =>
  raw(path, { body: JSON.stringify(cmd), base64 });

async function control(path: string, method = "POST", body?: unknown, token = TOKEN) {
  const res = await raw(`/__gateway/${path}`, {
    method,
    token,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res;
}

async function stats(token = TOKEN): Promise<Stats> {
  const res = await control("stats", "GET", undefined, token);
  expect(res.status).toBe(200);
  return res.body as Stats;
}

beforeAll(async () => {
  direct = new IORedis(REDIS_URL, { db: DB });
  await direct.flushdb();
  gateway = await startGateway({
    port: 0,
    redisUrl: REDIS_URL,
    tokens: { [TOKEN]: { db: DB }, [OTHER_TOKEN]: { db: DB } },
  });
  redis = new Redis({ url: gateway.url, token: TOKEN });
});

afterAll(async () => {
  await gateway?.close();
  await direct?.flushdb();
  await direct?.quit();
});

beforeEach(async () => {
  await control("reset");
});

describe("with the real @upstash/redis client (default options)", () => {
  it("round-trips strings, numbers and expiry", async () => {
    expect(await redis.set("str", "hello")).toBe("OK");
    expect(await redis.get("str")).toBe("hello");
    expect(await redis.set("ttl", "x", { ex: 100 })).toBe("OK");
    expect(await redis.ttl("ttl")).toBeGreaterThan(90);
    expect(await redis.incrby("count", 5)).toBe(5);
    expect(await redis.get("missing")).toBeNull();
    expect(await redis.del("str", "ttl")).toBe(2);
    expect(await direct.exists("str")).toBe(0);
  });

  it("round-trips JSON objects", async () => {
    const value = { id: 7, name: "café", tags: ["a", "b"], nested: { ok: true, n: null } };
    await redis.set("json", value);
    expect(await redis.get<typeof value>("json")).toEqual(value);
    expect(JSON.parse((await direct.get("json")) ?? "")).toEqual(value);
  });

  it("round-trips unicode, control characters and base64-looking strings", async () => {
    const values = [
      "héllo wörld 🚀 日本語",
      "line\nbreak\ttab\u0000nul",
      'q"uo\\te',
      "T0s=",
      "",
      " ",
    ];
    for (const [i, v] of values.entries()) await redis.set(`u:${i}`, v);
    const got = await Promise.all(values.map((_, i) => redis.get<string>(`u:${i}`)));
    expect(got).toEqual(values);
  });

  it('keeps "OK" intact both at top level and nested in arrays', async () => {
    // The client skips base64-decoding a top-level "OK" but decodes every array element.
    await redis.set("ok", "OK");
    expect(await redis.get("ok")).toBe("OK");
    await redis.rpush("oklist", "OK", "fine", "OK");
    expect(await redis.lrange("oklist", 0, -1)).toEqual(["OK", "fine", "OK"]);
    expect(await redis.mget("ok", "nope")).toEqual(["OK", null]);
  });

  it("handles hashes", async () => {
    expect(await redis.hset("h", { name: "ada", age: 36, meta: { x: 1 } })).toBe(3);
    expect(await redis.hget("h", "name")).toBe("ada");
    expect(await redis.hincrby("h", "age", 1)).toBe(37);
    expect(await redis.hgetall("h")).toEqual({ name: "ada", age: 37, meta: { x: 1 } });
    expect(await redis.hkeys("h")).toEqual(["name", "age", "meta"]);
  });

  it("handles sorted sets with scores", async () => {
    await redis.zadd("z", { score: 2.5, member: "b" }, { score: 1, member: "a" });
    await redis.zadd("z", { score: 10, member: "c" });
    expect(await redis.zrange("z", 0, -1)).toEqual(["a", "b", "c"]);
    expect(await redis.zrange("z", 0, -1, { withScores: true })).toEqual([
      "a",
      1,
      "b",
      2.5,
      "c",
      10,
    ]);
    expect(await redis.zscore("z", "b")).toBe(2.5);
    expect(await redis.zrange("z", 0, 0, { rev: true })).toEqual(["c"]);
  });

  it("SCANs with MATCH and COUNT until the cursor returns to 0", async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `scan:${i}`);
    await direct.mset(...keys.flatMap((k) => [k, "v"]));
    await direct.set("other:1", "v");
    const found = new Set<string>();
    let cursor: string | number = "0";
    let rounds = 0;
    do {
      const [next, batch]: [string | number, string[]] = await redis.scan(cursor, {
        match: "scan:*",
        count: 10,
      });
      for (const key of batch) found.add(key);
      cursor = next;
      rounds++;
    } while (String(cursor) !== "0" && rounds < 100);
    expect([...found].sort()).toEqual([...keys].sort());
    expect(rounds).toBeGreaterThan(1);
  });

  it("runs EVAL with keys, args and mixed reply types", async () => {
    const result = await redis.eval(
      "redis.call('SET', KEYS[1], ARGV[1]); return {KEYS[1], redis.call('GET', KEYS[1]), 42}",
      ["evalkey"],
      ["evalvalue"],
    );
    expect(result).toEqual(["evalkey", "evalvalue", 42]);
  });

  it("falls back from EVALSHA to EVAL on NOSCRIPT with a cold script cache", async () => {
    const source = `return redis.call('INCRBY', KEYS[1], ARGV[1]) -- ${TOKEN}`;
    // The per-run token makes the script new to the server, so its cache is cold without a
    // SCRIPT FLUSH (which would also cost other test files a round trip mid-count).
    const sha = createHash("sha1").update(source).digest("hex");
    expect(await direct.script("EXISTS", sha)).toEqual([0]);
    const script = redis.createScript<number>(source);
    await expect(redis.evalsha(sha, ["sha:ctr"], ["1"])).rejects.toThrow(/NOSCRIPT/);

    await control("reset");
    expect(await script.exec(["sha:ctr"], ["5"])).toBe(5);
    // EVALSHA failed with NOSCRIPT, then EVAL ran: two round trips.
    expect((await stats()).requests).toBe(2);
    expect(await direct.script("EXISTS", sha)).toEqual([1]);

    await control("reset");
    expect(await script.exec(["sha:ctr"], ["5"])).toBe(10);
    // EVAL cached the script, so EVALSHA now succeeds on the first try.
    expect((await stats()).requests).toBe(1);
  });

  it("executes explicit pipelines, surfacing per-command errors", async () => {
    const results = await redis.pipeline().set("p:a", 1).incr("p:a").get("p:a").exec();
    expect(results).toEqual(["OK", 2, 2]);

    await direct.set("p:str", "abc");
    const failing = redis.pipeline().set("p:b", "x").incr("p:str").get("p:b");
    await expect(failing.exec()).rejects.toThrow(
      /Command 2 \[ incr \] failed: ERR value is not an integer/,
    );
    // A pipeline is not a transaction: the commands around the failure still ran.
    expect(await direct.get("p:b")).toBe("x");

    const kept = await redis.pipeline().incr("p:str").get("p:b").exec({ keepErrors: true });
    expect(kept[0]?.error).toMatch(/ERR value is not an integer/);
    expect(kept[1]).toEqual({ error: undefined, result: "x" });
    // A pipeline of one command (what auto-pipelining sends) runs without a Redis pipeline:
    // same shapes, its error still a per-command {"error"} under HTTP 200.
    const single = await command("/pipeline", [["INCR", "p:str"]]);
    expect(single.status).toBe(200);
    expect(single.body).toEqual([{ error: expect.stringMatching(/ERR value is not an integer/) }]);
    expect((await command("/pipeline", [["GET", "p:b"]])).body).toEqual([{ result: "x" }]);
    expect((await stats()).byRoute["/pipeline"]).toBe(5);
  });

  it("executes MULTI/EXEC transactions atomically", async () => {
    const results = await redis.multi().set("m:a", 1).incr("m:a").incr("m:a").get("m:a").exec();
    expect(results).toEqual(["OK", 2, 3, 3]);
    expect((await stats()).byRoute["/multi-exec"]).toBe(1);

    // Concurrent transactions never interleave: each sees its own two increments back to back.
    const pairs = await Promise.all(
      Array.from({ length: 20 }, () => redis.multi().incr("m:ctr").incr("m:ctr").exec()),
    );
    for (const [first, second] of pairs) expect(second).toBe((first as number) + 1);
    expect(await direct.get("m:ctr")).toBe("40");
  });

  it("rejects a whole transaction when a command fails to queue (EXECABORT)", async () => {
    const res = await command("/multi-exec", [
      ["SET", "m:never", "1"],
      ["NOSUCHCOMMAND", "x"],
    ]);
    expect(res.status).toBe(400);
    expect((res.body as { error: string }).error).toMatch(/^EXECABORT .*unknown command/);
    expect(await direct.exists("m:never")).toBe(0);

    // Same batch as a pipeline: the SET runs, the bad command reports its own error.
    const piped = await command("/pipeline", [
      ["SET", "m:piped", "1"],
      ["NOSUCHCOMMAND", "x"],
    ]);
    expect(piped.status).toBe(200);
    expect(piped.body).toEqual([
      { result: "OK" },
      { error: expect.stringMatching(/unknown command/) },
    ]);
    expect(await direct.get("m:piped")).toBe("1");
  });

  it("auto-pipelines concurrent calls into fewer HTTP requests", async () => {
    const [a, b, c, d, e] = await Promise.all([
      redis.set("ap:a", "1"),
      redis.set("ap:b", "2"),
      redis.get("ap:a"),
      redis.incr("ap:n"),
      redis.exists("ap:b"),
    ]);
    expect([a, b, d]).toEqual(["OK", "OK", 1]);
    // Reads and writes travel in separate batches, so ordering across them is not promised.
    expect([null, 1]).toContain(c);
    expect([0, 1]).toContain(e);
    const s = await stats();
    expect(s.commands).toBe(5);
    // One batch for the writes, one for the reads.
    expect(s.requests).toBeLessThanOrEqual(2);
    expect(s.byRoute["/pipeline"]).toBe(s.requests);
  });

  it("passes Redis's own error text through", async () => {
    await redis.set("notanint", "abc");
    await expect(redis.incr("notanint")).rejects.toThrow(
      "ERR value is not an integer or out of range",
    );
    const res = await command("/", ["INCR", "notanint"]);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: "ERR value is not an integer or out of range" });
    const noscript = await command("/", ["EVALSHA", "f".repeat(40), "0"]);
    expect(noscript.status).toBe(400);
    expect((noscript.body as { error: string }).error).toMatch(/^NOSCRIPT /);
  });

  it("refuses a request over Upstash's 10 MB with Upstash's error, and takes one under it", async () => {
    const big = "x".repeat(10_000_001);
    await expect(redis.set("too-big", big)).rejects.toThrow("ERR max request size exceeded");
    expect(await direct.exists("too-big")).toBe(0);
    const res = await command("/", ["SET", "too-big", big]);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: "ERR max request size exceeded" });
    // Under the limit, with room for the command around it: stored whole.
    await redis.set("fits", "y".repeat(9_000_000));
    expect(await direct.strlen("fits")).toBe(9_000_000);
    await direct.del("fits");
  });

  it("scopes FLUSHALL to the token's database", async () => {
    const neighbour = new IORedis(REDIS_URL, { db: DB + 1 });
    const key = `gw-test-neighbour-${randomBytes(4).toString("hex")}`;
    try {
      await neighbour.set(key, "keep me");
      await redis.set("doomed", "1");
      expect(await redis.flushall()).toBe("OK");
      expect(await direct.dbsize()).toBe(0);
      expect(await neighbour.get(key)).toBe("keep me");
    } finally {
      await neighbour.del(key);
      await neighbour.quit();
    }
  });

  it("fails with the gateway's 401 message when the token is wrong", async () => {
    const intruder = new Redis({ url: gateway.url, token: "wrong-token" });
    await expect(intruder.get("str")).rejects.toThrow(/Unauthorized: invalid token/);
  });
});

describe("wire format", () => {
  it("base64-encodes strings only when asked, leaving integers, null and top-level OK alone", async () => {
    await direct.rpush("wire:list", "OK", "hé");
    const plain = await command("/", ["LRANGE", "wire:list", "0", "-1"]);
    expect(plain.body).toEqual({ result: ["OK", "hé"] });
    const encoded = await command("/", ["LRANGE", "wire:list", "0", "-1"], true);
    expect(encoded.body).toEqual({ result: ["T0s=", Buffer.from("hé").toString("base64")] });

    expect((await command("/", ["SET", "wire:s", "v"], true)).body).toEqual({ result: "OK" });
    expect((await command("/", ["GET", "wire:s"], true)).body).toEqual({ result: "dg==" });
    expect((await command("/", ["GET", "wire:none"], true)).body).toEqual({ result: null });
    expect((await command("/", ["LLEN", "wire:list"], true)).body).toEqual({ result: 2 });
    const piped = await command("/pipeline", [["PING"], ["ECHO", "x"]], true);
    expect(piped.body).toEqual([{ result: "UE9ORw==" }, { result: "eA==" }]);
  });

  it("returns raw bytes exactly in base64 mode", async () => {
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x0a]);
    await direct.set("wire:bin", bytes);
    const res = await command("/", ["GET", "wire:bin"], true);
    const { result } = res.body as { result: string };
    expect(Buffer.from(result, "base64").equals(bytes)).toBe(true);
  });

  it("returns an increasing upstash-sync-token", async () => {
    const first = Number((await command("/", ["PING"])).headers.get("upstash-sync-token"));
    const second = Number(
      (await command("/pipeline", [["PING"]])).headers.get("upstash-sync-token"),
    );
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first);
  });

  it("accepts numbers and booleans as arguments, like the client sends them", async () => {
    expect((await command("/", ["SET", "wire:n", 12.5])).body).toEqual({ result: "OK" });
    expect(await direct.get("wire:n")).toBe("12.5");
    await command("/", ["SET", "wire:b", true]);
    expect(await direct.get("wire:b")).toBe("true");
  });

  it("supports Upstash's path form for single commands", async () => {
    const set = await raw("/set/wire:path", { body: "a value/with slash" });
    expect(set.body).toEqual({ result: "OK" });
    const get = await raw(`/get/${encodeURIComponent("wire:path")}`, { method: "GET" });
    expect(get.body).toEqual({ result: "a value/with slash" });
  });
});

describe("bad requests", () => {
  it("rejects missing or wrong bearer tokens on every route", async () => {
    for (const path of ["/", "/pipeline", "/multi-exec", "/__gateway/stats"]) {
      const missing = await raw(path, { token: null, body: '["PING"]' });
      expect(missing.status).toBe(401);
      expect((missing.body as { error: string }).error).toMatch(/^Unauthorized: /);
      const wrong = await raw(path, { token: "nope", body: '["PING"]' });
      expect(wrong.status).toBe(401);
    }
    const health = await raw("/__gateway/health", { method: "GET", token: null });
    expect(health).toMatchObject({ status: 200, body: { ok: true } });
  });

  it("explains malformed bodies with 400", async () => {
    const cases: Array<[string, string, RegExp]> = [
      ["/", "{not json", /not valid JSON/],
      ["/", '{"command":"GET"}', /must be a JSON array/],
      ["/", "[]", /is empty/],
      ["/", '["GET",{"k":1}]', /argument 1 must be a string or number, got object/],
      ["/", '["GET",null]', /got null/],
      ["/", '[""]', /empty command name/],
      ["/pipeline", '["GET","k"]', /array of command arrays/],
      ["/pipeline", "[]", /at least one command/],
      ["/multi-exec", '{"a":1}', /array of command arrays/],
      ["/pipeline", "nope", /not valid JSON/],
    ];
    for (const [path, body, message] of cases) {
      const res = await raw(path, { body });
      expect(res.status, `${path} ${body}`).toBe(400);
      expect((res.body as { error: string }).error).toMatch(message);
    }
  });

  it("refuses blocking and connection-state commands", async () => {
    const refused = [
      ["BLPOP", "q", "0"],
      ["SUBSCRIBE", "ch"],
      ["MONITOR"],
      ["SELECT", "2"],
      ["MULTI"],
      ["WATCH", "k"],
      ["QUIT"],
      ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
    ];
    for (const cmd of refused) {
      const res = await command("/", cmd);
      expect(res.status, cmd.join(" ")).toBe(400);
      expect((res.body as { error: string }).error).toMatch(/is not supported by the gateway/);
    }
    const inPipeline = await command("/pipeline", [["PING"], ["BRPOP", "q", "1"]]);
    expect(inPipeline.status).toBe(400);
    expect((inPipeline.body as { error: string }).error).toMatch(/^Command 2: BRPOP/);
    // SUBSCRIBE is served as a stream on its own route (test/node/subscribe.test.ts), never
    // on the shared connection of the JSON routes.
    const inJson = await command("/", ["SUBSCRIBE", "ch"]);
    expect((inJson.body as { error: string }).error).toMatch(/POST \/subscribe\/<channel>/);
  });
});

describe("control API", () => {
  it("counts requests and commands per route, and resets", async () => {
    await command("/", ["PING"]);
    await command("/pipeline", [["PING"], ["ping"], ["ECHO", "x"]]);
    await command("/multi-exec", [["PING"], ["PING"]]);
    // toMatchObject: the Upstash emulation counters are covered in gateway-scripts.test.ts.
    expect(await stats()).toMatchObject({
      requests: 3,
      commands: 6,
      byRoute: { "/": 1, "/pipeline": 1, "/multi-exec": 1 },
      byCommand: { PING: 5, ECHO: 1 },
      streams: { active: 0, opened: 0 },
      calls: { readOnly: 0, writing: 0, other: 6 },
      served: { primary: 3, replica: 0 },
    });
    expect(await stats(OTHER_TOKEN)).toMatchObject({ requests: 0, commands: 0 });
    expect((await control("reset")).body).toEqual({ ok: true });
    expect(await stats()).toMatchObject({
      requests: 0,
      commands: 0,
      byRoute: { "/": 0, "/pipeline": 0, "/multi-exec": 0 },
      byCommand: {},
      streams: { active: 0, opened: 0 },
      calls: { readOnly: 0, writing: 0, other: 0 },
    });
  });

  it("fails exactly the next N requests in status mode", async () => {
    const set = await control("faults", "POST", { failCount: 1, failMode: "status" });
    expect(set.status).toBe(200);
    await expect(redis.get("fault:k")).rejects.toThrow(/Injected fault/);
    expect(await redis.get("fault:k")).toBeNull();

    await control("faults", "POST", { failCount: 2, failStatus: 502 });
    expect((await command("/", ["PING"])).status).toBe(502);
    expect((await command("/", ["PING"])).status).toBe(502);
    expect(await command("/", ["PING"])).toMatchObject({ status: 200, body: { result: "PONG" } });
    // Faulted requests still count; they just never reach Redis.
    expect(await stats()).toMatchObject({ requests: 5, commands: 2 });
  });

  it("applies failRate and keeps faults per token", async () => {
    await control("faults", "POST", { failRate: 1 });
    expect((await command("/", ["PING"])).status).toBe(503);
    const other = await raw("/", { token: OTHER_TOKEN, body: '["PING"]' });
    expect(other.body).toEqual({ result: "PONG" });
    expect((await control("faults", "GET")).body).toMatchObject({ faults: { failRate: 1 } });
    expect((await control("faults", "DELETE")).status).toBe(200);
    expect((await command("/", ["PING"])).status).toBe(200);
    expect((await control("faults", "GET")).body).toEqual({ faults: null });
  });

  it("drops connections in drop mode", async () => {
    // retry:false still means two attempts in this client (its loop runs attempts + 1 times).
    const noRetry = new Redis({ url: gateway.url, token: TOKEN, retry: false });
    await control("faults", "POST", { failRate: 1, failMode: "drop" });
    await expect(noRetry.get("k")).rejects.toThrow();
    expect((await stats()).requests).toBe(2);

    // One dropped request is invisible to a default client: it retries the fetch.
    await control("reset");
    await control("faults", "POST", { failCount: 1, failMode: "drop" });
    expect(await redis.set("drop:k", "v")).toBe("OK");
    expect((await stats()).requests).toBe(2);
  });

  it("adds latency", async () => {
    await control("faults", "POST", { latencyMs: 150 });
    const started = performance.now();
    expect(await redis.ping()).toBe("PONG");
    expect(performance.now() - started).toBeGreaterThanOrEqual(120);
  });

  it("draws the jitter of tokens given one jitterSeed from one sequence per kind of request", async () => {
    const seed = 20261123;
    const jitterMs = 60;
    const expected = Array.from({ length: 6 }, prng(seed)).map((u) => u * jitterMs);
    // One sequence for all requests would hand the first token's PINGs the odd draws (an ECHO
    // takes each even one): some would wait far less than `expected`, and the check below
    // would fail. Per kind, its PINGs wait exactly what the other token's do.
    const shared = Array.from({ length: 12 }, prng(seed)).map((u) => u * jitterMs);
    expect(expected.some((delay, i) => (shared[2 * i + 1] ?? 0) < delay - 10)).toBe(true);
    for (const token of [TOKEN, OTHER_TOKEN]) {
      const set = await control("faults", "POST", { jitterMs, jitterSeed: seed }, token);
      expect(set.body).toMatchObject({ faults: { jitterMs, jitterSeed: seed } });
      for (const delay of expected) {
        // Another kind of request in between, on one token only (a background flush).
        if (token === TOKEN)
          expect((await raw("/", { token, body: '["ECHO","x"]' })).status).toBe(200);
        const started = performance.now();
        expect((await raw("/", { token, body: '["PING"]' })).body).toEqual({ result: "PONG" });
        // At least the seeded delay (timers never fire early; 1 ms for their rounding). With
        // Math.random instead, six draws all at or above these would be a fluke.
        expect(performance.now() - started).toBeGreaterThanOrEqual(delay - 1);
      }
      await control("faults", "DELETE", undefined, token);
    }
    expect((await control("faults", "POST", { jitterSeed: 1.5 })).status).toBe(400);
  });

  it("validates fault settings", async () => {
    const bad: unknown[] = [
      { failRate: 2 },
      { failMode: "explode" },
      { failStatus: 200 },
      { failCount: 1.5 },
      { latencyMs: -1 },
      { surprise: true },
      [1],
    ];
    for (const body of bad) {
      const res = await control("faults", "POST", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await control("nope", "GET")).status).toBe(404);
  });
});

describe("when Redis is unreachable", () => {
  let dead: Gateway;

  beforeAll(async () => {
    dead = await startGateway({
      port: 0,
      redisUrl: "redis://127.0.0.1:1",
      tokens: { [TOKEN]: { db: 0 } },
    });
  });

  afterAll(async () => {
    await dead?.close();
  });

  it("answers 500 fast with a clear message", async () => {
    const started = performance.now();
    const res = await fetch(dead.url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '["PING"]',
    });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string };
    expect(body.error).toMatch(
      /^Redis at redis:\/\/127\.0\.0\.1:1 is unreachable: .*ECONNREFUSED.*; start redis-server or set REDIS_URL$/,
    );
    expect(performance.now() - started).toBeLessThan(3000);

    const client = new Redis({ url: dead.url, token: TOKEN });
    await expect(client.get("k")).rejects.toThrow(/is unreachable/);
    const piped = await fetch(`${dead.url}/pipeline`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: '[["PING"]]',
    });
    expect(piped.status).toBe(500);
    // A subscribe stream needs its own connection: it fails the same way, before any stream.
    const stream = await fetch(`${dead.url}/subscribe/ch`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(stream.status).toBe(500);
    expect(((await stream.json()) as { error: string }).error).toMatch(/is unreachable/);
  });
});
