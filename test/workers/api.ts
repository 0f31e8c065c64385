import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../functions/index";
import { stack } from "./stack";

export interface ApiOptions {
  /** CACHE_PREFIX for this call: give each test file its own so files cannot share entries. */
  prefix: string;
  /** Overrides of other bindings (e.g. a gateway token with faults injected). */
  env?: Record<string, unknown>;
  /** Admin bearer token shortcut. */
  admin?: boolean;
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/**
 * Calls the Worker's fetch entry point in-process (real Hono app, real gateway, real Postgres)
 * and waits for its waitUntil work, so the next call observes fills and outbox updates.
 */
export async function api<T = unknown>(
  method: string,
  path: string,
  options: ApiOptions & { body?: unknown; headers?: Record<string, string> },
): Promise<ApiResponse<T>> {
  const headers = new Headers(options.headers);
  if (options.body !== undefined && !headers.has("content-type")) {
    headers.set("content-type", "application/json");
  }
  if (options.admin) headers.set("authorization", `Bearer ${stack.adminToken}`);
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === "string"
        ? options.body
        : JSON.stringify(options.body);
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://edgecache.test${path}`, { method, headers, body }),
    { ...env, CACHE_PREFIX: options.prefix, ...options.env } as typeof env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (e.g. the Swagger UI page): keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}
