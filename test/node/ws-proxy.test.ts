import { createHash } from "node:crypto";
import { createServer, type Socket } from "node:net";
import { neonConfig, Pool, type PoolClient } from "@neondatabase/serverless";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import ws, { WebSocket } from "ws";
import { ensureDatabase, migrateDatabase } from "../../db/migrate";
import { categories, products } from "../../db/schema";
import { seedDatabase } from "../../db/seed";
import { configureNeon, createDb } from "../../src/db/neon";
import { parseTarget, startWsProxy, type WsProxy } from "../../tools/neon-ws-proxy/server";
import { dropThrowawayDatabase, throwawayDatabaseUrl } from "./pg-throwaway";

let proxy: WsProxy;
let databaseUrl: string;
const proxyLog: string[] = [];
const pools: Pool[] = [];

function newPool(connectionString = databaseUrl, max = 10): Pool {
  const pool = new Pool({ connectionString, max });
  // Pools must not throw an unhandled 'error' when a test kills a backend.
  pool.on("error", () => undefined);
  pools.push(pool);
  return pool;
}

async function waitForConnections(n: number): Promise<void> {
  await vi.waitFor(() => expect(proxy.connections()).toBe(n), { timeout: 10_000, interval: 20 });
}

/** Opens a raw WebSocket and reports how the proxy answered the handshake. */
function handshake(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${proxy.url.replace(/\/v2$/, "")}${path}`, { headers });
    socket.on("open", () => {
      socket.close();
      resolve({ status: 101, body: "" });
    });
    socket.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    socket.on("error", (err) => {
      // 'error' follows 'unexpected-response'; only a bare error is a failure.
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

beforeAll(async () => {
  databaseUrl = throwawayDatabaseUrl();
  await ensureDatabase(databaseUrl);
  await migrateDatabase(databaseUrl);
  await seedDatabase(databaseUrl, { categories: 3, products: 50, users: 5 });

  proxy = await startWsProxy({ port: 0, log: (line) => proxyLog.push(line) });
  // Node 20 has no global WebSocket; the Worker gets the runtime's own.
  neonConfig.webSocketConstructor = ws;
  configureNeon({ databaseUrl, wsProxy: proxy.url });
});

afterAll(async () => {
  await Promise.allSettled(pools.map((p) => (p.ended || p.ending ? undefined : p.end())));
  configureNeon({ databaseUrl });
  neonConfig.webSocketConstructor = undefined;
  await proxy?.close();
  if (databaseUrl) await dropThrowawayDatabase(databaseUrl);
});

describe("neon-ws-proxy with the real @neondatabase/serverless driver", () => {
  it("exposes a wsProxy value without scheme on a random port", () => {
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.url).toBe(`127.0.0.1:${proxy.port}/v2`);
  });

  it("runs select 1", async () => {
    const pool = newPool();
    const res = await pool.query<{ one: number }>("SELECT 1 AS one");
    expect(res.rows).toEqual([{ one: 1 }]);
    await pool.end();
  });

  it("runs parameterized queries and round-trips non-ASCII text", async () => {
    const pool = newPool();
    const res = await pool.query<{ sum: number; t: string; n: string }>(
      "SELECT $1::int + $2::int AS sum, $3::text AS t, $4::numeric AS n",
      [40, 2, "héllo ✓ 🚀", "12.50"],
    );
    expect(res.rows).toEqual([{ sum: 42, t: "héllo ✓ 🚀", n: "12.50" }]);

    const seeded = await pool.query<{ sku: string }>(
      "SELECT sku FROM products WHERE id = ANY($1::int[]) ORDER BY id",
      [[1, 2, 3]],
    );
    expect(seeded.rows).toHaveLength(3);
    await pool.end();
  });

  it("carries multi-megabyte messages both ways", async () => {
    const pool = newPool();
    const big = `${"x".repeat(3 * 1024 * 1024)}end`;
    const up = await pool.query<{ len: number; md5: string }>(
      "SELECT length($1::text) AS len, md5($1::text) AS md5",
      [big],
    );
    expect(up.rows[0]).toEqual({
      len: big.length,
      md5: createHash("md5").update(big).digest("hex"),
    });
    const down = await pool.query<{ s: string }>("SELECT repeat('ab', 4 * 1024 * 1024) AS s");
    expect(down.rows[0]?.s.length).toBe(8 * 1024 * 1024);
    await pool.end();
  });

  it("keeps a rolled-back transaction invisible", async () => {
    const pool = newPool();
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("INSERT INTO categories (slug, name) VALUES ($1, $2)", [
        "tx-probe",
        "Probe",
      ]);
      const inside = await client.query(
        "SELECT count(*)::int AS n FROM categories WHERE slug = 'tx-probe'",
      );
      expect(inside.rows[0]).toEqual({ n: 1 });
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    const after = await pool.query(
      "SELECT count(*)::int AS n FROM categories WHERE slug = 'tx-probe'",
    );
    expect(after.rows[0]).toEqual({ n: 0 });
    await pool.end();
  });

  it("serves drizzle queries through createDb", async () => {
    const { db, pool, close } = createDb({ databaseUrl, wsProxy: proxy.url });
    pools.push(pool);

    const [inserted] = await db
      .insert(categories)
      .values({ slug: "drizzle-probe", name: "Drizzle Probe" })
      .returning();
    expect(inserted).toMatchObject({ slug: "drizzle-probe", version: 1 });
    expect(inserted?.createdAt).toBeInstanceOf(Date);

    const page = await db
      .select({ id: products.id, sku: products.sku })
      .from(products)
      .orderBy(products.id)
      .limit(5);
    expect(page.map((p) => p.id)).toEqual([1, 2, 3, 4, 5]);

    const rel = await db.query.categories.findFirst({
      where: eq(categories.slug, "drizzle-probe"),
    });
    expect(rel?.name).toBe("Drizzle Probe");

    await expect(
      db.transaction(async (tx) => {
        await tx.update(products).set({ stock: 0 }).where(eq(products.id, 1));
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    const [p1] = await db
      .select({ stock: products.stock })
      .from(products)
      .where(eq(products.id, 1));
    expect(p1?.stock).not.toBeUndefined();

    await db.delete(categories).where(eq(categories.slug, "drizzle-probe"));
    await close();
    await close(); // idempotent: a Worker may call it from several paths
    expect(pool.ended).toBe(true);
  });

  it("handles several concurrent clients on distinct backends", async () => {
    await waitForConnections(0);
    const pool = newPool(databaseUrl, 8);
    const clients: PoolClient[] = await Promise.all(
      Array.from({ length: 8 }, () => pool.connect()),
    );
    try {
      const pids = await Promise.all(
        clients.map(async (c, i) => {
          const res = await c.query<{ pid: number; i: number }>(
            "SELECT pg_backend_pid() AS pid, $1::int AS i, pg_sleep(0.05)",
            [i],
          );
          expect(res.rows[0]?.i).toBe(i);
          return res.rows[0]?.pid;
        }),
      );
      expect(new Set(pids).size).toBe(8);
      expect(proxy.connections()).toBe(8);
    } finally {
      for (const c of clients) c.release();
    }
    await pool.end();
    await waitForConnections(0);
  });

  it("returns connections() to 0 after pool.end()", async () => {
    const pool = newPool();
    await Promise.all([pool.query("SELECT 1"), pool.query("SELECT 2"), pool.query("SELECT 3")]);
    expect(proxy.connections()).toBeGreaterThan(0);
    await pool.end();
    await waitForConnections(0);
    expect(proxyLog.some((l) => /closed .* -> 127\.0\.0\.1:5432/.test(l))).toBe(true);
  });

  it("closes the WebSocket when Postgres drops the backend", async () => {
    const pool = newPool(databaseUrl, 1);
    const client = await pool.connect();
    // A persistent listener: the dropped backend can emit a second "error" ("Connection
    // terminated unexpectedly") after the first, and an error without a listener is thrown
    // at top level, failing the run as an unhandled error.
    const errored = new Promise<unknown>((resolve) => client.on("error", resolve));
    pool.on("error", () => {});
    const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    const killer = newPool();
    await killer.query("SELECT pg_terminate_backend($1)", [rows[0]?.pid]);
    await killer.end();
    await errored;
    client.release(true);
    await pool.end();
    await waitForConnections(0);
  });

  it("refuses targets outside the allow-list with a clear error", async () => {
    const pool = newPool("postgres://postgres@127.0.0.1:5433/postgres");
    const err: unknown = await pool.query("SELECT 1").then(
      () => undefined,
      (e: unknown) => e,
    );
    // The driver surfaces the failed handshake as the ws ErrorEvent, not an Error.
    expect(err).toMatchObject({
      message: expect.stringMatching(/Unexpected server response: 403/),
    });
    await pool.end().catch(() => undefined);
    expect(proxyLog.some((l) => /403 target 127\.0\.0\.1:5433 is not allowed/.test(l))).toBe(true);

    const res = await handshake("/v2?address=10.0.0.1:5432");
    expect(res.status).toBe(403);
    expect(res.body).toMatch(/target 10\.0\.0\.1:5432 is not allowed .*WS_PROXY_ALLOWED/);
    expect(proxy.connections()).toBe(0);
  });

  it("rejects upgrades without an address, with a bad one, or from foreign browser pages", async () => {
    expect(await handshake("/v2")).toMatchObject({
      status: 400,
      body: expect.stringMatching(/missing \?address=host:port/),
    });
    expect(await handshake("/v2?address=nope")).toMatchObject({
      status: 400,
      body: expect.stringMatching(/invalid address/),
    });
    expect(
      await handshake("/v2?address=127.0.0.1:5432", { Origin: "https://evil.example" }),
    ).toMatchObject({ status: 403, body: expect.stringMatching(/origin .* not allowed/) });
    expect(
      await handshake("/v2?address=127.0.0.1:5432", { Origin: "http://localhost:8787" }),
    ).toEqual({
      status: 101,
      body: "",
    });
    // Any path is accepted; only the address matters.
    expect(await handshake("/anything?address=localhost:5432")).toEqual({ status: 101, body: "" });
    await waitForConnections(0);
  });

  it("answers 502 with the reason when the allowed target is down", async () => {
    const port = await closedPort();
    const lines: string[] = [];
    const other = await startWsProxy({
      port: 0,
      allowedTargets: [`127.0.0.1:${port}`],
      log: (l) => lines.push(l),
    });
    try {
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = new WebSocket(`ws://${other.url}?address=127.0.0.1:${port}`);
        socket.on("unexpected-response", (_req, r) => {
          let body = "";
          r.on("data", (c: Buffer) => {
            body += c.toString();
          });
          r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
        });
        socket.on("open", () => reject(new Error("should not open")));
        socket.on("error", () => undefined);
      });
      expect(res.status).toBe(502);
      expect(res.body).toMatch(
        new RegExp(`cannot reach Postgres at 127\\.0\\.0\\.1:${port}: ECONNREFUSED`),
      );
      expect(other.connections()).toBe(0);
    } finally {
      await other.close();
    }
  });

  it("applies backpressure both ways instead of buffering in the proxy", async () => {
    const TOTAL = 128 * 1024 * 1024;
    const CHUNK = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    let received = 0;
    let upstreamSocket: Socket | undefined;
    // Fake upstream: floods until TOTAL, honouring its own write backpressure,
    // and counts what it reads back.
    const upstream = createServer((sock) => {
      upstreamSocket = sock;
      sock.on("data", (d: Buffer) => {
        received += d.length;
      });
      const pump = () => {
        while (written < TOTAL) {
          written += CHUNK.length;
          if (!sock.write(CHUNK)) {
            sock.once("drain", pump);
            return;
          }
        }
      };
      pump();
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const addr = upstream.address();
    if (addr === null || typeof addr === "string") throw new Error("no port");
    const target = `127.0.0.1:${addr.port}`;
    const other = await startWsProxy({ port: 0, allowedTargets: [target] });
    const client = new WebSocket(`ws://${other.url}?address=${target}`);
    try {
      let got = 0;
      client.on("message", (d: Buffer) => {
        got += d.length;
      });
      await new Promise<void>((resolve, reject) => {
        client.once("open", () => resolve());
        client.once("error", reject);
      });

      // Downstream: a client that stops reading must stall the upstream.
      client.pause();
      await new Promise((r) => setTimeout(r, 500));
      const stalledAt = written;
      await new Promise((r) => setTimeout(r, 300));
      expect(written).toBe(stalledAt);
      // Only socket buffers (kernel + one high-water mark) may sit in between.
      expect(written).toBeLessThan(TOTAL / 2);
      client.resume();
      await vi.waitFor(() => expect(got).toBe(TOTAL), { timeout: 20_000, interval: 20 });

      // Upstream direction: Postgres not reading must stall the client.
      upstreamSocket?.pause();
      const payload = Buffer.alloc(1024 * 1024, 1);
      for (let i = 0; i < 64; i++) client.send(payload);
      await new Promise((r) => setTimeout(r, 500));
      expect(client.bufferedAmount).toBeGreaterThan(0);
      expect(received).toBeLessThan(64 * 1024 * 1024);
      upstreamSocket?.resume();
      await vi.waitFor(() => expect(received).toBe(64 * 1024 * 1024), {
        timeout: 20_000,
        interval: 20,
      });
    } finally {
      client.terminate();
      await other.close();
      upstreamSocket?.destroy();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
  });

  it("explains plain HTTP requests instead of hanging", async () => {
    const res = await fetch(`http://${proxy.url}`);
    expect(res.status).toBe(426);
    expect(await res.text()).toMatch(/WebSocket/);
  });
});

describe("configureNeon", () => {
  it("applies the local-mode settings", () => {
    configureNeon({ databaseUrl, wsProxy: proxy.url });
    expect(neonConfig.useSecureWebSocket).toBe(false);
    expect(neonConfig.pipelineConnect).toBe(false);
    expect(neonConfig.pipelineTLS).toBe(false);
    expect(neonConfig.forceDisablePgSSL).toBe(true);
    const wsProxy = neonConfig.wsProxy;
    expect(typeof wsProxy === "function" ? wsProxy("127.0.0.1", 5432) : wsProxy).toBe(
      `${proxy.url}?address=127.0.0.1:5432`,
    );
  });

  it("accepts a ws:// or wss:// prefix and derives useSecureWebSocket from it", () => {
    configureNeon({ databaseUrl, wsProxy: "wss://proxy.example.net/v1/" });
    const wsProxy = neonConfig.wsProxy;
    expect(typeof wsProxy === "function" ? wsProxy("db", 5432) : wsProxy).toBe(
      "proxy.example.net/v1?address=db:5432",
    );
    expect(neonConfig.useSecureWebSocket).toBe(true);
    configureNeon({ databaseUrl, wsProxy: `ws://${proxy.url}` });
    expect(neonConfig.useSecureWebSocket).toBe(false);
  });

  it("restores Neon's defaults when called without wsProxy", () => {
    configureNeon({ databaseUrl });
    expect(neonConfig.useSecureWebSocket).toBe(true);
    expect(neonConfig.pipelineConnect).toBe("password");
    expect(neonConfig.forceDisablePgSSL).toBe(true);
    const wsProxy = neonConfig.wsProxy;
    expect(typeof wsProxy === "function" ? wsProxy("ep-x.neon.tech", 5432) : wsProxy).toBe(
      "ep-x.neon.tech/v2",
    );
    // Idempotent: nothing to undo the second time.
    configureNeon({ databaseUrl });
    expect(neonConfig.useSecureWebSocket).toBe(true);
    configureNeon({ databaseUrl, wsProxy: proxy.url });
  });
});

describe("parseTarget", () => {
  it("normalises host:port forms", () => {
    expect(parseTarget("LocalHost:5432")?.key).toBe("localhost:5432");
    expect(parseTarget("[::1]:5432")).toEqual({ host: "::1", port: 5432, key: "[::1]:5432" });
    expect(parseTarget("::1:5432")?.key).toBe("[::1]:5432");
    for (const bad of ["", "host", ":5432", "host:0", "host:70000", "host:54x", "a b:1", "h/x:1"]) {
      expect(parseTarget(bad), bad).toBeUndefined();
    }
  });
});
