import { env } from "cloudflare:test";
import { Redis } from "@upstash/redis/cloudflare";
import type { TestStack } from "../stack";

export const stack: TestStack = JSON.parse(env.TEST_STACK) as TestStack;

/** A direct client on the test gateway, for arranging and checking Redis state. */
export function testRedis(): Redis {
  return new Redis({ url: stack.gatewayUrl, token: stack.gatewayToken, enableTelemetry: false });
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
