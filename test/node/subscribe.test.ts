import { randomBytes } from "node:crypto";
import { Redis } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { gatewayControl } from "../../tools/upstash-gateway/control";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * The gateway's Server-Sent Events routes, driven by the real @upstash/redis Subscriber and by
 * raw fetch for the wire details, against real Redis. Pub/sub channels are server-wide (not per
 * DB) and this Redis is shared, so every channel name carries a random suffix.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const DB = Number(process.env.TEST_GATEWAY_DB ?? 13);
const TOKEN = `sub-test-${randomBytes(8).toString("hex")}`;
const run = randomBytes(4).toString("hex");
const channel = (name: string) => `t${run}:${name}`;

type Message = { channel: string; message: unknown };
type PMessage = Message & { pattern: string };

let gateway: Gateway;
let direct: IORedis;
let redis: Redis;

function stats(gw = gateway): Promise<{ streams: { active: number; opened: number } }> {
  return gatewayControl(gw.url, TOKEN, "stats");
}

/** This gateway's subscriber connections, as Redis itself lists them. */
async function subscriberConnections(gw = gateway): Promise<string[]> {
  const list = (await direct.call("CLIENT", "LIST")) as string;
  const prefix = `name=upstash-gateway:${gw.port}:`;
  return list.split("\n").filter((line) => line.includes(prefix));
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Subscribers registered with Redis for `name` (proves SUBSCRIBE ran before we publish). */
async function numsub(name: string): Promise<number> {
  const reply = (await direct.call("PUBSUB", "NUMSUB", name)) as [string, number];
  return Number(reply[1]);
}

/** Reads an SSE body as text until `done(text)` says enough. */
async function readUntil(body: ReadableStream<Uint8Array>, done: (text: string) => boolean) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!done(text)) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text;
}

function openStream(path: string, init: { token?: string; signal?: AbortSignal } = {}) {
  return fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${init.token ?? TOKEN}`,
      accept: "text/event-stream",
      "content-type": "application/json",
    },
    body: "[]",
    signal: init.signal,
  });
}

beforeAll(async () => {
  direct = new IORedis(REDIS_URL, { db: DB });
  gateway = await startGateway({ port: 0, redisUrl: REDIS_URL, tokens: { [TOKEN]: { db: DB } } });
  redis = new Redis({ url: gateway.url, token: TOKEN, enableTelemetry: false });
});

afterAll(async () => {
  await gateway?.close();
  await direct?.quit();
});

beforeEach(async () => {
  await gatewayControl(gateway.url, TOKEN, "reset", {});
});

describe("subscribe() with the real @upstash/redis client", () => {
  it("receives what is published through the gateway and directly on Redis, commas and JSON intact", async () => {
    const a = channel("a");
    const b = channel("b");
    const sub = redis.subscribe<unknown>([a, b]);
    const counts: number[] = [];
    const got: Message[] = [];
    const errors: unknown[] = [];
    sub.on("subscribe", (count) => counts.push(count));
    sub.on("message", (m) => got.push(m));
    sub.on("error", (e) => errors.push(e));
    try {
      await until("both subscriptions", async () => (await numsub(a)) + (await numsub(b)) === 2);
      const json = { keys: ["product:1", "a,b"], note: 'say "hi", then: bye', n: [1, 2] };
      expect(await redis.publish(a, json)).toBe(1);
      expect(await redis.publish(b, "one, two, three")).toBe(1);
      await direct.publish(a, "héllo, wörld 🚀");
      await direct.publish(b, JSON.stringify([1, "x,y"]));
      await until("four messages", () => got.length === 4);

      expect(counts).toEqual([1, 1]); // one stream (and connection) per channel in this client
      const onA = got.filter((m) => m.channel === a).map((m) => m.message);
      const onB = got.filter((m) => m.channel === b).map((m) => m.message);
      expect(onA).toEqual([json, "héllo, wörld 🚀"]);
      expect(onB).toEqual(["one, two, three", [1, "x,y"]]);
      expect(errors).toEqual([]);
      expect((await stats()).streams).toEqual({ active: 2, opened: 2 });
      expect(await subscriberConnections()).toHaveLength(2);
    } finally {
      await sub.unsubscribe();
    }
  });

  it("psubscribe() gets pmessage with the pattern and the matching channel", async () => {
    const pattern = channel("p:*");
    const sub = redis.psubscribe<{ n: number }>(pattern);
    const got: PMessage[] = [];
    sub.on("pmessage", (m) => got.push(m));
    try {
      await until(
        "the pattern subscription",
        async () => (await subscriberConnections()).length === 1,
      );
      // The connection shows in CLIENT LIST before its PSUBSCRIBE is processed: wait for both.
      await until(
        "the pattern registered",
        async () => ((await direct.call("PUBSUB", "NUMPAT")) as number) >= 1,
      );
      await redis.publish(channel("p:1"), { n: 1 });
      await direct.publish(channel("p:2"), JSON.stringify({ n: 2 }));
      await direct.publish(channel("q:3"), JSON.stringify({ n: 3 })); // does not match
      await until("two pmessages", () => got.length === 2);
      expect(got).toEqual([
        { pattern, channel: channel("p:1"), message: { n: 1 } },
        { pattern, channel: channel("p:2"), message: { n: 2 } },
      ]);
    } finally {
      await sub.unsubscribe();
    }
  });

  it("closes the stream's Redis connection when the client unsubscribes", async () => {
    const name = channel("bye");
    const sub = redis.subscribe(name);
    await until("the subscription", async () => (await numsub(name)) === 1);
    const [connection] = await subscriberConnections();
    expect(connection).toMatch(/ sub=1 /);
    expect((await stats()).streams.active).toBe(1);

    await sub.unsubscribe();
    await until(
      "the connection to close",
      async () => (await subscriberConnections()).length === 0,
    );
    expect(await numsub(name)).toBe(0);
    expect((await stats()).streams).toEqual({ active: 0, opened: 1 });
  });

  it("refuses a wrong token before touching Redis", async () => {
    const intruder = new Redis({ url: gateway.url, token: "wrong", enableTelemetry: false });
    const sub = intruder.subscribe(channel("secret"));
    const errors: Error[] = [];
    sub.on("error", (e) => errors.push(e));
    await until("the error", () => errors.length === 1);
    expect(errors[0]?.message).toMatch(/Unauthorized: invalid token/);

    const anonymous = await fetch(`${gateway.url}/subscribe/${channel("secret")}`, {
      method: "POST",
    });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({
      error: "Unauthorized: missing Authorization: Bearer <token> header",
    });
    expect((await stats()).streams.opened).toBe(0);
    expect(await subscriberConnections()).toEqual([]);
  });
});

describe("the wire", () => {
  it("streams SSE lines exactly as Upstash does, several channels per path, payload as raw text", async () => {
    const a = channel("w:a");
    const b = channel("w/b"); // a slash travels percent-encoded
    const res = await openStream(`/subscribe/${a}/${encodeURIComponent(b)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(Number(res.headers.get("upstash-sync-token"))).toBeGreaterThan(0);
    const body = res.body as ReadableStream<Uint8Array>;
    const head = await readUntil(body, (t) => t.split("\n\n").length > 2);
    expect(head).toBe(`data: subscribe,${a},1\n\ndata: subscribe,${b},2\n\n`);

    await direct.publish(b, '{"k":"v,w"}');
    await direct.publish(a, "two\nlines");
    const rest = await readUntil(body, (t) => t.includes("lines"));
    // Not base64 even though the client sends Upstash-Encoding: base64 by default; a line
    // break in a payload becomes a second data: line (the SSE rule).
    expect(rest).toBe(`data: message,${b},{"k":"v,w"}\n\ndata: message,${a},two\ndata: lines\n\n`);
    await body.cancel();
  });

  it("streams pmessage lines", async () => {
    const pattern = channel("wp:*");
    const res = await openStream(`/psubscribe/${pattern}`);
    const body = res.body as ReadableStream<Uint8Array>;
    expect(await readUntil(body, (t) => t.endsWith("\n\n"))).toBe(
      `data: psubscribe,${pattern},1\n\n`,
    );
    await direct.publish(channel("wp:x"), "a,b");
    expect(await readUntil(body, (t) => t.endsWith("\n\n"))).toBe(
      `data: pmessage,${pattern},${channel("wp:x")},a,b\n\n`,
    );
    await body.cancel();
  });

  it("closes the Redis connection when the client aborts mid-stream", async () => {
    const controller = new AbortController();
    const res = await openStream(`/subscribe/${channel("abort")}`, { signal: controller.signal });
    const body = res.body as ReadableStream<Uint8Array>;
    await readUntil(body, (t) => t.includes("subscribe,"));
    expect(await subscriberConnections()).toHaveLength(1);
    controller.abort();
    await until(
      "the connection to close",
      async () => (await subscriberConnections()).length === 0,
    );
    expect((await stats()).streams.active).toBe(0);
  });

  it("ends the stream when Redis drops the subscriber connection", async () => {
    const res = await openStream(`/subscribe/${channel("killed")}`);
    const body = res.body as ReadableStream<Uint8Array>;
    await readUntil(body, (t) => t.includes("subscribe,"));
    const [line] = await subscriberConnections();
    const id = /\bid=(\d+)/.exec(line ?? "")?.[1];
    expect(id).toBeDefined();
    await direct.call("CLIENT", "KILL", "ID", String(id));
    // The client sees a clean end of stream, which is its cue to subscribe again.
    const reader = body.getReader();
    let ended = false;
    while (!ended) ended = (await reader.read()).done;
    await until("the stream to be forgotten", async () => (await stats()).streams.active === 0);
  });

  it("explains bad stream requests", async () => {
    const empty = await openStream("/subscribe");
    expect(empty.status).toBe(400);
    expect(await empty.json()).toEqual({
      error: "subscribe needs a channel: POST /subscribe/<channel>",
    });
    const put = await fetch(`${gateway.url}/psubscribe/x`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(put.status).toBe(405);
    const inBody = await fetch(gateway.url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(["SUBSCRIBE", "x"]),
    });
    expect(inBody.status).toBe(400);
    expect(((await inBody.json()) as { error: string }).error).toMatch(
      /POST \/subscribe\/<channel>/,
    );
    expect(await subscriberConnections()).toEqual([]);
  });
});

describe("a subscriber that stops reading", () => {
  let small: Gateway;

  beforeAll(async () => {
    small = await startGateway({
      port: 0,
      redisUrl: REDIS_URL,
      tokens: { [TOKEN]: { db: DB } },
      maxStreamBacklogBytes: 256 * 1024,
    });
  });

  afterAll(async () => {
    await small?.close();
  });

  it("is cut off once its backlog passes the limit, and its connection closed", async () => {
    const name = channel("slow");
    const res = await fetch(`${small.url}/subscribe/${name}`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.status).toBe(200);
    await until("the subscription", async () => (await numsub(name)) === 1);
    // Never read the body: socket buffers fill, then the gateway's queue passes the limit.
    const chunk = "x".repeat(64 * 1024);
    for (let i = 0; i < 2000 && (await numsub(name)) === 1; i++) {
      await direct.publish(name, chunk);
    }
    await until("the cut-off", async () => (await stats(small)).streams.active === 0);
    await until(
      "the connection to close",
      async () => (await subscriberConnections(small)).length === 0,
    );
    await res.body?.cancel();
  });
});

describe("gateway close()", () => {
  it("ends open streams cleanly and closes their Redis connections", async () => {
    const own = await startGateway({
      port: 0,
      redisUrl: REDIS_URL,
      tokens: { [TOKEN]: { db: DB } },
    });
    const res = await fetch(`${own.url}/subscribe/${channel("closing")}`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const body = res.body as ReadableStream<Uint8Array>;
    await readUntil(body, (t) => t.includes("subscribe,"));
    expect(await subscriberConnections(own)).toHaveLength(1);
    await own.close();
    const reader = body.getReader();
    let ended = false;
    while (!ended) ended = (await reader.read()).done;
    expect(await subscriberConnections(own)).toEqual([]);
  });
});
