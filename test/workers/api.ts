import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { expect } from "vitest";
import worker from "../../functions/index";
import type { ProductDetail } from "../../src/domain/products";
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

/** The API's error shape, with every detail any route adds. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    details?: { target?: string; issues?: { path: string; message: string }[] } & Record<
      string,
      unknown
    >;
  };
}

/**
 * Calls the Worker's fetch entry point in-process with the test bindings (plus `bindings`) and
 * waits for its waitUntil work.
 */
export async function fetchWorker(
  path: string,
  init: {
    method?: string;
    headers?: Headers;
    body?: BodyInit;
    /** Bindings over the test ones (e.g. a gateway token with faults injected). */
    bindings?: Record<string, unknown>;
  } = {},
): Promise<Response> {
  const { bindings, ...request } = init;
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://edgecache.test${path}`, request),
    { ...env, ...bindings } as typeof env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
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
  // A string or bytes go as they are (malformed JSON, bytes that are not UTF-8); anything else
  // as its JSON.
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === "string" || options.body instanceof Uint8Array
        ? options.body
        : JSON.stringify(options.body);
  const res = await fetchWorker(path, {
    method,
    headers,
    body,
    bindings: { CACHE_PREFIX: options.prefix, ...options.env },
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (e.g. the Swagger UI page): keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export type BoundApi = <T = unknown>(
  method: string,
  path: string,
  options?: Omit<ApiOptions, "prefix"> & { body?: unknown; headers?: Record<string, string> },
) => Promise<ApiResponse<T>>;

/** `api` bound to a test file's prefix (and any other defaults, e.g. `{ admin: true }`). */
export function apiFor(prefix: string, defaults: Omit<ApiOptions, "prefix"> = {}): BoundApi {
  return (method, path, options = {}) => api(method, path, { prefix, ...defaults, ...options });
}

/** A 400 `validation_failed` with at least one issue (and one at `path`, when given). */
export function expectValidation(res: ApiResponse<unknown>, path?: string) {
  expect(res.status).toBe(400);
  const body = res.body as ErrorBody;
  expect(body.error.code).toBe("validation_failed");
  expect(body.error.details?.issues?.length).toBeGreaterThan(0);
  if (path !== undefined) expect(body.error.details?.issues?.map((i) => i.path)).toContain(path);
}

/** POST /products, which must answer 201: the created product. */
export async function postProduct(
  api: BoundApi,
  body: Record<string, unknown>,
): Promise<ProductDetail> {
  const res = await api<ProductDetail>("POST", "/products", { body });
  expect(res.status).toBe(201);
  return res.body;
}
