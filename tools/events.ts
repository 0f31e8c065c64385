/**
 * `npm run events`: watch what the queue consumer applies, live, one line per event.
 *
 * Subscribes with @upstash/redis (so it works the same against real Upstash and against the
 * local gateway) to `{CACHE_PREFIX}:events`, where the consumer publishes each applied batch
 * when PUBLISH_EVENTS=1. URL, token and prefix come from the environment, else .dev.vars
 * (else .dev.vars.example), else wrangler.toml's [vars].
 *
 *   npm run events                       # {CACHE_PREFIX}:events
 *   npm run events -- --pattern 'ec:*'   # every channel under the prefix
 *   npm run events -- --channel other    # another channel
 *
 * Pub/sub has no "connection lost" signal in the client, so a heartbeat PUBLISH on a private
 * channel every few seconds tells whether our streams are still heard: an error means the
 * gateway is gone (we wait for it), fewer receivers than before means it restarted (we
 * subscribe again). Events published while disconnected are lost: pub/sub keeps no history.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "@upstash/redis";
import { parseDevVars } from "./lib/dev-vars";
import { formatEvent } from "./lib/event-line";
import { onLauncherGone } from "./lib/launcher";

const root = fileURLToPath(new URL("..", import.meta.url));

const USAGE = `Usage: npm run events [-- --pattern <glob> | --channel <name>] [--prefix <p>] [--heartbeat-ms <ms>]

Prints every invalidation the queue consumer publishes (PUBLISH_EVENTS=1) on
{CACHE_PREFIX}:events, one line each, until Ctrl-C.
  --pattern <glob>      psubscribe instead, e.g. 'ec:*'
  --channel <name>      subscribe to another channel
  --prefix <p>          CACHE_PREFIX (default: env, .dev.vars, wrangler.toml, "ec")
  --heartbeat-ms <ms>   how often to check the subscription is still heard (default 5000)
Reads UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN from the environment or .dev.vars.`;

interface Settings {
  url: string;
  token: string;
  prefix: string;
  /** Channel (subscribe) or pattern (psubscribe). */
  target: string;
  isPattern: boolean;
  heartbeatMs: number;
  publishEvents: string | undefined;
}

/** wrangler.toml `[vars]` value of `name` (a plain `NAME = "value"` line is all it holds). */
function wranglerVar(name: string): string | undefined {
  const path = `${root}wrangler.toml`;
  if (!existsSync(path)) return undefined;
  const match = new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, "m").exec(readFileSync(path, "utf8"));
  return match?.[1];
}

function devVars(): Record<string, string> {
  for (const file of [".dev.vars", ".dev.vars.example"]) {
    if (existsSync(`${root}${file}`)) return parseDevVars(readFileSync(`${root}${file}`, "utf8"));
  }
  return {};
}

function settings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      pattern: { type: "string" },
      channel: { type: "string" },
      prefix: { type: "string" },
      "heartbeat-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const vars = devVars();
  const pick = (name: string) => process.env[name] || vars[name] || wranglerVar(name);
  const url = pick("UPSTASH_REDIS_REST_URL");
  const token = pick("UPSTASH_REDIS_REST_TOKEN");
  if (!url || !token) {
    throw new Error(
      "No UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN: set them in the environment or in .dev.vars (cp .dev.vars.example .dev.vars).",
    );
  }
  if (values.pattern && values.channel) throw new Error("Use --pattern or --channel, not both.");
  const prefix = values.prefix ?? pick("CACHE_PREFIX") ?? "ec";
  const heartbeatMs = Number(values["heartbeat-ms"] ?? 5000);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 50) {
    throw new Error("--heartbeat-ms must be a whole number of milliseconds, at least 50.");
  }
  return {
    url,
    token,
    prefix,
    target: values.pattern ?? values.channel ?? `${prefix}:events`,
    isPattern: values.pattern !== undefined,
    heartbeatMs,
    publishEvents: pick("PUBLISH_EVENTS"),
  };
}

const status = (line: string) => console.error(`[events] ${line}`);

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
  return `${error.message}${cause}`;
}

/** A refusal from the server (wrong token, bad route) will not fix itself by retrying. */
function isRefusal(error: unknown): boolean {
  return error instanceof Error && error.name === "UpstashError";
}

type Stream = { unsubscribe(): Promise<void> };

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  // The client logs "Stream reading error" when a stream breaks; we say it better below.
  const consoleError = console.error;
  console.error = (...args: unknown[]) => {
    if (args[0] === "Stream reading error:") return;
    consoleError(...args);
  };

  const redis = new Redis({
    url: s.url,
    token: s.token,
    enableTelemetry: false,
    retry: false,
    // Lines show what was published, JSON or not; parsing is ours.
    automaticDeserialization: false,
  });
  const beatChannel = `edgecache-events-watch:${randomBytes(6).toString("hex")}`;
  let streams: Stream[] = [];
  let printed = 0;
  let fatal: Error | undefined;

  const onError = (error: unknown) => {
    if (isRefusal(error)) fatal = error as Error;
  };
  const print = (channel: string, raw: unknown) => {
    let message: unknown = raw;
    if (typeof raw === "string") {
      try {
        message = JSON.parse(raw);
      } catch {
        message = raw;
      }
    }
    const shown = channel === s.target ? undefined : channel;
    const width = Math.max(80, process.stdout.columns ?? 160);
    console.log(formatEvent(message, { now: Date.now(), channel: shown, width }));
    printed++;
  };

  const subscribe = () => {
    const beat = redis.subscribe(beatChannel);
    beat.on("error", onError);
    if (s.isPattern) {
      const events = redis.psubscribe<string>(s.target);
      events.on("pmessage", ({ channel, message }) => {
        if (channel !== beatChannel) print(channel, message);
      });
      events.on("error", onError);
      streams = [beat, events];
    } else {
      const events = redis.subscribe<string>(s.target);
      events.on("message", ({ channel, message }) => print(channel, message));
      events.on("error", onError);
      streams = [beat, events];
    }
  };
  const unsubscribe = async () => {
    const open = streams;
    streams = [];
    await Promise.all(open.map((stream) => stream.unsubscribe()));
  };

  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(130);
    stopping = true;
    void unsubscribe().finally(() => {
      status(`stopped after ${printed} event${printed === 1 ? "" : "s"}`);
      process.exit(0);
    });
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // npm stopped with SIGTERM does not pass it on (lib/launcher.ts).
  onLauncherGone(stop);

  const what = `${s.isPattern ? "pattern" : "channel"} ${s.target}`;
  status(`watching ${what} on ${s.url} (Ctrl-C to stop)`);
  if (!s.isPattern && !/^(1|true)$/.test(s.publishEvents ?? "")) {
    status(
      "note: the consumer publishes only with PUBLISH_EVENTS=1 (set it in .dev.vars, then restart npm run dev)",
    );
  }

  // down: gateway unreachable; connecting: subscribed, waiting to be heard; up: heard.
  let state: "start" | "down" | "connecting" | "up" = "start";
  let receivers = 0;
  let everUp = false;
  while (!stopping) {
    let heard: number | undefined;
    try {
      heard = Number(await redis.publish(beatChannel, "beat"));
    } catch (error) {
      if (isRefusal(error)) fatal = error as Error;
      else if (state !== "down") {
        status(
          `${state === "start" ? "cannot reach" : "lost"} ${s.url}: ${errorText(error)}; retrying every ${s.heartbeatMs} ms (is npm run dev running?)`,
        );
        await unsubscribe();
        state = "down";
      }
    }
    if (fatal) {
      await unsubscribe();
      throw new Error(
        `${s.url} refused us: ${fatal.message}. Check UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN.`,
      );
    }
    if (heard !== undefined) {
      if (state === "start" || state === "down") {
        if (state === "down") status(`${s.url} is back; subscribing again`);
        subscribe();
        state = "connecting";
      } else if (state === "connecting" && heard >= 1) {
        status(everUp ? `subscribed again to ${what}` : `subscribed to ${what}`);
        everUp = true;
        receivers = heard;
        state = "up";
      } else if (state === "up" && heard < receivers) {
        status("subscription lost (gateway restarted?); subscribing again");
        await unsubscribe();
        subscribe();
        state = "connecting";
      } else if (state === "up") {
        // A pattern that also matches the heartbeat channel is a second receiver.
        receivers = Math.max(receivers, heard);
      }
    }
    // While connecting, look again soon: being heard is a matter of milliseconds.
    const wait = state === "connecting" ? Math.min(100, s.heartbeatMs) : s.heartbeatMs;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

main().catch((error: unknown) => {
  status(errorText(error));
  process.exit(1);
});
