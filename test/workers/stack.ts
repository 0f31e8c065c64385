import { env } from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import { EdgeCache } from "../../src/cache";
import { createRedis } from "../../src/redis/client";
import type { TestStack } from "../stack";

export const stack: TestStack = JSON.parse(env.TEST_STACK) as TestStack;

/** A direct client on the test gateway, for arranging and checking Redis state. */
export function testRedis(): Redis {
  return new Redis({ url: stack.gatewayUrl, token: stack.gatewayToken, enableTelemetry: false });
}

/** An engine on the Worker's own Upstash client and the main gateway token, under `prefix`. */
export function workerCache(prefix: string): EdgeCache {
  return new EdgeCache({
    redis: createRedis({ url: stack.gatewayUrl, token: stack.gatewayToken }),
    prefix,
  });
}

/** The keys matching `match`, one SCAN page at a time. */
export async function* scanKeys(
  redis: Redis,
  match: string,
  count: number,
): AsyncGenerator<string[]> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, { match, count });
    yield keys;
    cursor = String(next);
  } while (cursor !== "0");
}

/** Deletes every Redis key under `prefix`. */
export async function clearPrefix(prefix: string): Promise<void> {
  const redis = testRedis();
  for await (const keys of scanKeys(redis, `${prefix}:*`, 500)) {
    if (keys.length > 0) await redis.del(...keys);
  }
}

/** Reads and resets the gateway's per-token request counter and fault knobs. */
export async function gatewayControl(
  path: "stats" | "reset" | "faults",
  init?: { method?: string; body?: unknown; token?: string },
): Promise<Record<string, unknown>> {
  const res = await fetch(`${stack.gatewayUrl}/__gateway/${path}`, {
    method: init?.method ?? (path === "stats" ? "GET" : "POST"),
    headers: {
      authorization: `Bearer ${init?.token ?? stack.gatewayToken}`,
      "content-type": "application/json",
    },
    body: init?.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!res.ok) throw new Error(`gateway control ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}
