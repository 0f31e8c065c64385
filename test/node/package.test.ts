import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { type Gateway, startGateway } from "../../tools/upstash-gateway/server";

/**
 * edgecache as somebody else uses it. `npm pack` (whose prepack runs `npm run build:pkg`),
 * then the tarball installed offline, from the npm cache, into a temporary folder together
 * with examples/worker; the example type-checked against the tarball's declarations and run
 * in workerd by its own wrangler, against an Upstash gateway over the test Redis and a small
 * origin server whose requests are counted.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
const exampleDir = join(root, "examples/worker");
const run = promisify(execFile);
const started = Date.now();
const progress = (line: string) =>
  console.log(`[package] ${((Date.now() - started) / 1000).toFixed(1)}s ${line}`);

async function sh(cmd: string, args: string[], cwd: string, hint: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, {
      cwd,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, npm_config_update_notifier: "false" },
    });
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    const tail = `${e.stdout ?? ""}\n${e.stderr ?? ""}`.trim().split("\n").slice(-25).join("\n");
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${tail}\n→ ${hint}`);
  }
}

/** The origin API the example caches: items by id, each request counted. */
function startOrigin() {
  const items = new Map<string, { id: string; name: string }>();
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const id = decodeURIComponent(/^\/items\/([^/]+)$/.exec(req.url ?? "")?.[1] ?? "");
    hits.set(id, (hits.get(id) ?? 0) + 1);
    const item = items.get(id);
    res.writeHead(item ? 200 : 404, { "content-type": "application/json" });
    res.end(JSON.stringify(item ?? { error: "not found" }));
  });
  return new Promise<{
    url: string;
    items: typeof items;
    hits: (id: string) => number;
    server: Server;
  }>((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}`, items, hits: (id) => hits.get(id) ?? 0, server });
    }),
  );
}

/** The code of a `{"error":{"code","message"}}` answer. */
const errorCode = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string } }).error.code;

interface DevWorker {
  ready: Promise<void>;
  fetch(url: string, init?: RequestInit): Promise<Response>;
  dispose(): Promise<void>;
}

describe.sequential("edgecache as a package: npm pack → examples/worker in workerd", () => {
  const stack = inject("stack");
  const token = `package-${randomBytes(8).toString("hex")}`;
  const purgeToken = `purge-${randomBytes(8).toString("hex")}`;
  const suffix = randomBytes(3).toString("hex"); // item ids unique to this run
  let dir: string;
  let app: string;
  let packed: { filename: string; files: { path: string }[] };
  let gateway: Gateway;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  let worker: DevWorker | undefined;
  const envSet = ["CLOUDFLARE_CF_FETCH_ENABLED", "WRANGLER_SEND_METRICS"] as const;
  const savedEnv = envSet.map((name) => [name, process.env[name]] as const);

  const gatewayStats = async () => {
    const res = await fetch(`${gateway.url}/__gateway/stats`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return (await res.json()) as { requests: number; byCommand: Record<string, number> };
  };
  const gatewayControl = (path: string, method: string, body?: unknown) =>
    fetch(`${gateway.url}/__gateway/${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const get = (id: string, headers: Record<string, string> = {}) =>
    (worker as DevWorker).fetch(`http://example.test/items/${id}`, { headers });
  const purge = (body: unknown, auth = purgeToken) =>
    (worker as DevWorker).fetch("http://example.test/purge", {
      method: "POST",
      headers: { authorization: `Bearer ${auth}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  /** A MISS's fill runs in waitUntil, after the response: wait until the gateway saw it. */
  const requestsReach = (n: number) =>
    vi.waitFor(
      async () => {
        expect((await gatewayStats()).requests).toBe(n);
      },
      { timeout: 5_000, interval: 20 },
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "edgecache-package-"));
    app = join(dir, "app");

    progress("npm pack (prepack builds dist/ with npm run build:pkg) …");
    const out = await sh(
      "npm",
      ["pack", "--json", "--pack-destination", dir],
      root,
      "run `npm run build:pkg` to see the build error.",
    );
    // Lifecycle scripts print to the same stdout before npm's JSON.
    const list = JSON.parse(out.slice(out.indexOf("[\n"))) as (typeof packed)[];
    if (!list[0]) throw new Error(`npm pack printed no package:\n${out}`);
    packed = list[0];
    progress(`packed ${packed.filename} (${packed.files.length} files)`);

    await cp(exampleDir, app, {
      recursive: true,
      filter: (src) => !/[/\\](node_modules|\.wrangler)([/\\]|$)|\.tgz$|\.dev\.vars$/.test(src),
    });
    await cp(join(dir, packed.filename), join(app, packed.filename));
    // The lockfile pins the tarball's integrity, and npm would reinstall that older content
    // from its cache: let npm read the freshly packed tarball instead.
    const lockPath = join(app, "package-lock.json");
    const lock = JSON.parse(await readFile(lockPath, "utf8"));
    delete lock.packages["node_modules/edgecache"];
    await writeFile(lockPath, JSON.stringify(lock, null, 2));

    // The offline install only finds what the repository's own `npm ci` put in the npm cache:
    // the example must pin the versions the repository uses.
    const ours = JSON.parse(await readFile(join(root, "package.json"), "utf8")).devDependencies;
    const theirs = JSON.parse(await readFile(join(app, "package.json"), "utf8"));
    for (const [name, version] of Object.entries({
      ...theirs.dependencies,
      ...theirs.devDependencies,
    })) {
      if (name !== "edgecache" && ours[name] !== version) {
        throw new Error(
          `examples/worker/package.json pins ${name}@${String(version)}, the repository ${ours[name]}: align it, then run \`npm install --package-lock-only\` in examples/worker.`,
        );
      }
    }

    progress("npm install --offline in a temporary folder (tarball + the example's lockfile) …");
    await sh(
      "npm",
      ["install", "--offline", "--no-audit", "--no-fund"],
      app,
      "the example's dependencies must be in the npm cache: run `npm ci` in the repository (same versions as examples/worker/package-lock.json).",
    );
    progress("installed");

    gateway = await startGateway({
      port: 0,
      redisUrl: stack.redisUrl,
      tokens: { [token]: { db: stack.redisDb } },
    });
    origin = await startOrigin();

    progress("starting the example in workerd (the example's own wrangler) …");
    // No Request.cf download (there is no internet here) and no usage metrics.
    process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
    process.env.WRANGLER_SEND_METRICS = "false";
    const wrangler = (await import(
      pathToFileURL(join(app, "node_modules/wrangler/wrangler-dist/cli.js")).href
    )) as { unstable_startWorker(options: unknown): Promise<DevWorker> };
    const plain = (value: string) => ({ type: "plain_text", value });
    worker = await wrangler.unstable_startWorker({
      config: join(app, "wrangler.toml"),
      sendMetrics: false,
      bindings: {
        UPSTASH_REDIS_REST_URL: plain(gateway.url),
        UPSTASH_REDIS_REST_TOKEN: plain(token),
        ORIGIN_URL: plain(origin.url),
        PURGE_TOKEN: plain(purgeToken),
      },
      dev: {
        server: { hostname: "127.0.0.1", port: 0 },
        inspector: false,
        watch: false,
        persist: false,
        logLevel: "warn",
      },
    });
    await worker.ready;
    progress("worker ready");
  }, 120_000);

  afterAll(async () => {
    await worker?.dispose();
    await gateway?.close();
    origin?.server.close();
    for (const [name, value] of savedEnv) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("ships dist/ and docs only, and installs nothing but itself", async () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths.filter((p) => !p.startsWith("dist/")).sort()).toEqual([
      "README.md",
      "package.json",
    ]);
    expect(paths).toEqual(
      expect.arrayContaining([
        "dist/cache/index.js",
        "dist/cache/index.d.ts",
        "dist/cache/README.md",
        "dist/hono/index.js",
        "dist/hono/index.d.ts",
      ]),
    );
    const manifest = JSON.parse(
      await readFile(join(app, "node_modules/edgecache/package.json"), "utf8"),
    );
    // Everything in `dependencies` would be installed for every user of the tarball: the
    // app's libraries belong in devDependencies (the Worker is bundled by wrangler).
    expect(manifest.dependencies ?? {}, "package.json dependencies must stay empty").toEqual({});
    expect(Object.keys(manifest.exports)).toEqual(["./cache", "./hono", "./package.json"]);
    for (const name of ["drizzle-orm", "@neondatabase/serverless", "zod", "@hono/zod-openapi"]) {
      expect(existsSync(join(app, "node_modules", name)), name).toBe(false);
    }
    // The engine entry is self-contained: only relative imports, so no Hono, no drizzle.
    const cacheDir = join(app, "node_modules/edgecache/dist/cache");
    const files = (await readdir(cacheDir, { recursive: true })).filter((f) => f.endsWith(".js"));
    for (const file of files) {
      const source = await readFile(join(cacheDir, file), "utf8");
      // Statements only: the JSDoc examples kept in the JS import the package by name.
      const imports = [...source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/gm)].map(
        (m) => m[1],
      );
      if (file === "engine.js") expect(imports).toContain("./keys.js"); // the scan sees imports
      // Relative, and inside dist/cache (subfolders such as read/ import ../policy.js).
      expect(
        imports.every(
          (s) =>
            (s?.startsWith("./") || s?.startsWith("../")) &&
            !relative(cacheDir, resolve(dirname(join(cacheDir, file)), s)).startsWith(".."),
        ),
        `${file}: ${imports.join(", ")}`,
      ).toBe(true);
    }
    const example = JSON.parse(await readFile(join(exampleDir, "package.json"), "utf8"));
    expect(
      example.dependencies.edgecache,
      "examples/worker/package.json must name the tarball npm pack writes",
    ).toBe(`file:${packed.filename}`);
  });

  it("type-checks the example against the tarball's declarations (Bundler and NodeNext)", async () => {
    progress("tsc: the example (moduleResolution Bundler) …");
    const tsc = join(app, "node_modules/typescript/bin/tsc");
    await sh("node", [tsc, "-p", "."], app, "the example no longer compiles against dist/*.d.ts.");
    // Node16/NodeNext resolution wants fully specified relative imports in the .d.ts too.
    const check = join(app, "nodenext");
    await mkdir(check);
    await writeFile(join(check, "package.json"), '{"type":"module"}');
    await writeFile(
      join(check, "check.ts"),
      [
        'import { Redis } from "@upstash/redis";',
        'import { EdgeCache, L1Cache, type ScriptClient } from "edgecache/cache";',
        'import { cacheJson, edgeCache } from "edgecache/hono";',
        "declare const redis: ScriptClient;",
        "export const used = [new EdgeCache({ redis, l1: new L1Cache(10, 1000) }), cacheJson, edgeCache];",
        // What the READMEs write, under exactOptionalPropertyTypes (found by a library audit:
        // the client's `string | undefined` sync token, an event's optional lists, a
        // versionOf over a nullable loader, a loader taking the abort signal).
        'export const real = new EdgeCache({ redis: new Redis({ url: "https://x", token: "t" }) });',
        "declare const event: { keys?: string[] | undefined; tags?: string[] | undefined };",
        "export const applied = () => real.apply({ keys: event.keys, tags: event.tags });",
        "type Row = { version: number };",
        'export const read = () => real.getOrLoad("r:1", async (): Promise<Row | null> => null, { versionKey: "r:1", versionOf: (r: Row) => r.version });',
        'type Load = Parameters<typeof cacheJson>[1]["load"];',
        "export const load: Load = async (signal?: AbortSignal) => signal?.aborted ?? null;",
      ].join("\n"),
    );
    await writeFile(
      join(check, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          lib: ["es2023", "dom"],
          types: [],
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: ["check.ts"],
      }),
    );
    progress("tsc: a NodeNext consumer, declarations checked (skipLibCheck off) …");
    await sh("node", [tsc, "-p", "nodenext"], app, "dist/*.d.ts fail under NodeNext.");
  }, 60_000);

  it("runs in plain Node from the tarball (ES modules with fully specified imports)", async () => {
    const script = [
      'import { Redis } from "@upstash/redis";',
      'import { EdgeCache } from "edgecache/cache";',
      `const redis = new Redis({ url: ${JSON.stringify(gateway.url)}, token: ${JSON.stringify(token)}, enableTelemetry: false });`,
      `const cache = new EdgeCache({ redis, prefix: "pkgnode${suffix}" });`,
      "let loads = 0;",
      "const load = async () => ({ loaded: ++loads });",
      'const a = await cache.getOrLoad("k", load);',
      'const b = await cache.getOrLoad("k", load);',
      "console.log(JSON.stringify([a.status, b.status, b.value, loads]));",
    ].join("\n");
    await writeFile(join(app, "node-smoke.mjs"), script);
    const out = await sh("node", ["node-smoke.mjs"], app, "the engine does not load in Node.");
    expect(JSON.parse(out.trim())).toEqual(["MISS", "HIT", { loaded: 1 }, 1]);
  });

  it("answers MISS → HIT → 304 → purge → MISS with the documented Redis requests", async () => {
    // Warm Redis's script cache (read, fill, apply) so no EVALSHA falls back to EVAL below.
    origin.items.set(`warm${suffix}`, { id: `warm${suffix}`, name: "warm" });
    expect((await get(`warm${suffix}`)).status).toBe(200);
    await vi.waitFor(async () =>
      expect((await get(`warm${suffix}`)).headers.get("x-cache")).toBe("HIT"),
    );
    expect((await purge({ keys: [`item:warm${suffix}`] })).status).toBe(200);
    await gatewayControl("reset", "POST");

    const id = `a${suffix}`;
    origin.items.set(id, { id, name: "first" });
    const miss = await get(id);
    expect(miss.status).toBe(200);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    expect(await miss.json()).toEqual({ id, name: "first" });
    const etag = miss.headers.get("etag");
    expect(etag).toMatch(/^"c\.[A-Za-z0-9_-]{16}"$/);
    expect(origin.hits(id)).toBe(1);
    await requestsReach(2); // the read, then the fill in waitUntil

    const hit = await get(id);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("etag")).toBe(etag);
    expect(hit.headers.get("cache-control")).toBe("no-cache");
    expect(await hit.json()).toEqual({ id, name: "first" });
    expect((await gatewayStats()).requests).toBe(3);

    const notModified = await get(id, { "if-none-match": `W/"other", ${etag}` });
    expect(notModified.status).toBe(304);
    expect(await notModified.text()).toBe("");
    expect(notModified.headers.get("etag")).toBe(etag);
    expect(notModified.headers.get("x-cache")).toBe("HIT");
    expect((await gatewayStats()).requests).toBe(4);
    expect(origin.hits(id)).toBe(1);

    origin.items.set(id, { id, name: "second" });
    const purged = await purge({ keys: [`item:${id}`], tags: [] });
    expect(await purged.json()).toEqual({ removed: 1, tagsBumped: 0, versionsAdvanced: 0 });
    expect((await gatewayStats()).requests).toBe(5);

    const again = await get(id, { "if-none-match": etag ?? "" });
    expect(again.status).toBe(200); // new content, new ETag: the old one no longer matches
    expect(again.headers.get("x-cache")).toBe("MISS");
    expect(again.headers.get("etag")).not.toBe(etag);
    expect(await again.json()).toEqual({ id, name: "second" });
    expect(origin.hits(id)).toBe(2);
    await requestsReach(7);
    const stats = await gatewayStats();
    expect(stats.byCommand).toEqual({ EVALSHA: 7 }); // one script per request, all cached
  }, 30_000);

  it("invalidates by tag, caches a 404, and fails well", async () => {
    const id = `b${suffix}`;
    origin.items.set(id, { id, name: "tagged" });
    const tagMiss = await get(id);
    expect(tagMiss.headers.get("x-cache")).toBe("MISS");
    const tagged = tagMiss.headers.get("etag");
    await vi.waitFor(async () => expect((await get(id)).headers.get("x-cache")).toBe("HIT"));
    expect(await (await purge({ tags: ["items"] })).json()).toMatchObject({ tagsBumped: 1 });
    expect((await get(id)).headers.get("x-cache")).toBe("MISS");
    expect(origin.hits(id)).toBe(2);

    // Absence is cached like a value: the origin is asked once.
    const missing = `none${suffix}`;
    const first = await get(missing);
    expect(first.status).toBe(404);
    expect(first.headers.get("cache-control")).toBe("no-store");
    expect(await first.json()).toEqual({
      error: { code: "not_found", message: `/items/${missing} was not found` },
    });
    await vi.waitFor(async () => expect((await get(missing)).headers.get("x-cache")).toBe("HIT"));
    expect(origin.hits(missing)).toBe(1);

    const badKey = await get("a%20b");
    expect(badKey.status).toBe(400);
    expect(await errorCode(badKey)).toBe("invalid_key"); // cacheJson's own answer
    const notAList = await purge({ keys: `item:${id}` });
    expect(notAList.status).toBe(400);
    expect(await errorCode(notAList)).toBe("bad_request");
    const notJson = await (worker as DevWorker).fetch("http://example.test/purge", {
      method: "POST",
      headers: { authorization: `Bearer ${purgeToken}` },
      body: "{",
    });
    expect(notJson.status).toBe(400);
    const unauthorized = await purge({ tags: ["items"] }, "wrong");
    expect(unauthorized.status).toBe(401);
    expect(await errorCode(unauthorized)).toBe("unauthorized");

    // Redis unreachable: reads fall back to the origin (BYPASS), purges answer 503.
    await gatewayControl("faults", "POST", { failRate: 1, failStatus: 503 });
    try {
      const bypass = await get(id);
      expect(bypass.status).toBe(200);
      expect(bypass.headers.get("x-cache")).toBe("BYPASS");
      expect(bypass.headers.get("etag")).toBe(tagged); // same bytes, same validator
      const down = await purge({ keys: [`item:${id}`] });
      expect(down.status).toBe(503);
      expect(down.headers.get("retry-after")).toBe("5");
      expect(await errorCode(down)).toBe("cache_unavailable");
    } finally {
      await gatewayControl("faults", "DELETE");
    }
  }, 30_000);
});
