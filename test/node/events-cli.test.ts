import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Redis as IORedis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { formatEvent } from "../../tools/lib/event-line";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * `npm run events` (tools/events.ts) as a person runs it: a real process subscribed through
 * the gateway with @upstash/redis, real Redis publishing, the gateway going away and coming
 * back on the same port. Plus the pure line formatter.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const DB = Number(process.env.TEST_GATEWAY_DB ?? 13);
const TOKEN = `events-cli-${randomBytes(8).toString("hex")}`;
const PREFIX = `cli${randomBytes(4).toString("hex")}`;

describe("formatEvent", () => {
  const now = Date.UTC(2026, 0, 2, 3, 4, 5, 67);
  const time = new Date(now).toTimeString().slice(0, 8);

  it("summarises an applied batch: origin, counts, first names, lag", () => {
    const line = formatEvent(
      {
        keys: ["product:1", "product:2", "product:3", "product:4", "product:5", "product:6"],
        tags: ["category:2"],
        versions: { "product:1": 7 },
        messages: 3,
        origin: "purge",
        at: now - 42,
      },
      { now },
    );
    expect(line).toBe(
      `${time}.067  purge  3 msgs  keys 6: product:1, product:2, product:3, product:4 +2 more  tags 1: category:2  versions 1: product:1=7  lag 42 ms`,
    );
  });

  it("shows the channel under a pattern, anything else as text, on one line, truncated", () => {
    expect(formatEvent("a,b\nc", { now, channel: "ec:other" })).toBe(
      `${time}.067  [ec:other]  message: a,b c`,
    );
    expect(formatEvent({ hello: "x" }, { now })).toBe(`${time}.067  message: {"hello":"x"}`);
    const long = formatEvent(
      { keys: ["k".repeat(500)], origin: "purge", at: 1 },
      { now, width: 80 },
    );
    expect(long).toHaveLength(80);
    expect(long.endsWith("…")).toBe(true);
    expect(formatEvent({ tags: ["t"], at: 1 }, { now })).toContain("at 1970-01-01T00:00:00.001Z");
  });
});

/** A running `tools/events.ts` with its output collected line by line. */
class Watcher {
  readonly out: string[] = [];
  readonly err: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(url: string, token: string, args: string[] = [], heartbeatMs = 100) {
    // node + tsx's loader directly, so the signal reaches the script itself (npm/npx wrap it).
    this.child = spawn(
      process.execPath,
      ["--import", "tsx", "tools/events.ts", "--heartbeat-ms", String(heartbeatMs), ...args],
      {
        cwd: root,
        env: {
          ...process.env,
          UPSTASH_REDIS_REST_URL: url,
          UPSTASH_REDIS_REST_TOKEN: token,
          CACHE_PREFIX: PREFIX,
          PUBLISH_EVENTS: "1",
        },
      },
    );
    const collect = (into: string[]) => (chunk: Buffer) => {
      into.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    };
    this.child.stdout?.on("data", collect(this.out));
    this.child.stderr?.on("data", collect(this.err));
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
  }

  async waitFor(stream: "out" | "err", pattern: RegExp, ms = 15_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this[stream].find((l) => pattern.test(l));
      if (line) return line;
      if (Date.now() > deadline) {
        throw new Error(
          `no ${stream} line ${pattern}; out=${this.out.join("|")} err=${this.err.join("|")}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  interrupt(): void {
    this.child.kill("SIGINT");
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

describe("npm run events", () => {
  let direct: IORedis;
  let gateway: Gateway | undefined;
  let watcher: Watcher | undefined;

  beforeAll(() => {
    direct = new IORedis(REDIS_URL, { db: DB });
  });

  afterEach(async () => {
    watcher?.kill();
    await gateway?.close();
    gateway = undefined;
  });

  afterAll(async () => {
    await direct.quit();
  });

  const start = (port = 0) =>
    startGateway({ port, redisUrl: REDIS_URL, tokens: { [TOKEN]: { db: DB } } });

  it("prints each event live, waits out the gateway going away, resubscribes, stops on Ctrl-C", async () => {
    gateway = await start();
    const { port, url } = gateway;
    watcher = new Watcher(url, TOKEN);
    await watcher.waitFor("err", new RegExp(`subscribed to channel ${PREFIX}:events`));

    const event = {
      keys: ["product:1", "product:2"],
      tags: ["category:3"],
      versions: {},
      messages: 2,
      origin: "purge",
      at: Date.now(),
    };
    await direct.publish(`${PREFIX}:events`, JSON.stringify(event));
    const line = await watcher.waitFor("out", /keys 2/);
    expect(line).toMatch(
      / {2}purge {2}2 msgs {2}keys 2: product:1, product:2 {2}tags 1: category:3 {2}versions 0 {2}lag \d+ ms$/,
    );

    await gateway.close();
    gateway = undefined;
    await watcher.waitFor("err", /lost http:\/\/127\.0\.0\.1:\d+: .*retrying every 100 ms/);
    gateway = await start(port);
    await watcher.waitFor("err", /is back; subscribing again/);
    await watcher.waitFor("err", /subscribed again to channel/);
    await direct.publish(`${PREFIX}:events`, JSON.stringify({ ...event, keys: ["after"] }));
    await watcher.waitFor("out", /keys 1: after/);

    watcher.interrupt();
    expect(await watcher.exited).toBe(0);
    expect(watcher.err.at(-1)).toBe("[events] stopped after 2 events");
    expect(watcher.out).toHaveLength(2);
  });

  it("notices a gateway restart between two heartbeats and subscribes again", async () => {
    gateway = await start();
    const { port, url } = gateway;
    // A slow heartbeat, so the restart happens between two checks: the next one is answered,
    // by nobody.
    watcher = new Watcher(url, TOKEN, [], 1500);
    await watcher.waitFor("err", /subscribed to channel/);
    await gateway.close();
    gateway = await start(port);
    await watcher.waitFor("err", /subscription lost \(gateway restarted\?\); subscribing again/);
    await watcher.waitFor("err", /subscribed again to channel/);
    await direct.publish(`${PREFIX}:events`, JSON.stringify({ keys: ["k"], origin: "purge" }));
    await watcher.waitFor("out", /keys 1: k/);
    expect(watcher.err.join("\n")).not.toMatch(/lost http/);
  });

  it("watches a pattern and names each channel", async () => {
    gateway = await start();
    watcher = new Watcher(gateway.url, TOKEN, ["--pattern", `${PREFIX}:*`]);
    await watcher.waitFor("err", /subscribed to pattern/);
    await direct.publish(`${PREFIX}:elsewhere`, "hello, world");
    expect(await watcher.waitFor("out", /hello/)).toMatch(
      new RegExp(`\\[${PREFIX}:elsewhere\\] {2}message: hello, world$`),
    );
  });

  it("gives up with a clear message when the token is refused", async () => {
    gateway = await start();
    watcher = new Watcher(gateway.url, "not-the-token");
    expect(await watcher.exited).toBe(1);
    expect(watcher.err.join("\n")).toMatch(
      /refused us: .*Unauthorized: invalid token.*Check UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN/,
    );
  });
});
