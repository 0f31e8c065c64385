// A Worker that caches an origin API's items in Upstash Redis with edgecache.
import { Redis } from "@upstash/redis/cloudflare";
import { CacheWriteError, EdgeCache, InvalidKeyError } from "edgecache/cache";
import { cacheJson, type EdgeCacheVariables, edgeCache } from "edgecache/hono";
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";

type Bindings = {
  UPSTASH_REDIS_REST_URL: string;
  UPSTASH_REDIS_REST_TOKEN: string;
  ORIGIN_URL: string; // the API whose answers are cached
  PURGE_TOKEN: string;
};
type AppEnv = { Bindings: Bindings; Variables: EdgeCacheVariables };
type Item = { id: string; name: string };
const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === "string");

const app = new Hono<AppEnv>();

// One engine per request. One retry and a 1 s deadline per command (a fresh signal each time):
// with Redis slow or down, reads fall back to the origin (BYPASS) instead of hanging. No
// auto-pipelining: a request's reads run one script at a time, so batching would only cost.
// Plain JSON replies instead of base64: the engine reads back only text it wrote.
app.use(
  edgeCache<AppEnv>((c) => {
    const redis = Redis.fromEnv(c.env, {
      retry: { retries: 1, backoff: () => 25 },
      signal: () => AbortSignal.timeout(1_000),
      enableAutoPipelining: false,
      responseEncoding: false,
    });
    return new EdgeCache({ redis, prefix: "example" });
  }),
);

// MISS loads from the origin once (single flight), HIT costs one Redis request, 304 on ETag.
// Cache-Control is no-cache: browsers and CDNs revalidate, and that 304 is answered from Redis.
app.get("/items/:id", (c) =>
  cacheJson(c, {
    key: `item:${c.req.param("id")}`,
    load: async (): Promise<Item | null> => {
      const res = await fetch(`${c.env.ORIGIN_URL}/items/${encodeURIComponent(c.req.param("id"))}`);
      if (res.status === 404) return null; // cached for negativeTtl: a 404 costs no origin call
      if (!res.ok) throw new Error(`origin answered ${res.status}`);
      return res.json<Item>();
    },
    options: { ttl: 60_000, staleTtl: 300_000, negativeTtl: 30_000, tags: ["items"] },
  }),
);

// {"keys": ["item:1"], "tags": ["items"]}: one Redis request for the whole event.
app.post(
  "/purge",
  (c, next) => bearerAuth<AppEnv>({ token: c.env.PURGE_TOKEN })(c, next),
  async (c) => {
    const { keys = [], tags = [] }: { keys?: unknown; tags?: unknown } = (await c.req.json()) ?? {};
    if (!isStringList(keys) || !isStringList(tags)) {
      return c.json(
        { error: { code: "bad_request", message: "keys and tags: string arrays" } },
        400,
      );
    }
    return c.json(await c.var.edgecache.apply({ keys, tags }));
  },
);

app.onError((err, c) => {
  const fail = (status: 400 | 401 | 502 | 503, code: string, message: string) =>
    c.json({ error: { code, message } }, status);
  if (err instanceof HTTPException && err.status === 401)
    return fail(401, "unauthorized", err.message);
  if (err instanceof InvalidKeyError || err instanceof SyntaxError)
    return fail(400, "bad_request", err.message);
  if (err instanceof CacheWriteError) {
    c.header("Retry-After", "5");
    return fail(503, "cache_unavailable", "Redis could not be reached; retry the purge.");
  }
  return fail(502, "origin_error", "The origin could not be read; try again.");
});

export default app;
