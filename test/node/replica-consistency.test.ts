import { randomBytes } from "node:crypto";
import { Client as PgClient } from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Unstable_DevWorker } from "wrangler";
import { gatewayControl } from "../../tools/upstash-gateway/control";
import { startDevWorker } from "./dev-worker";
import { type GlobalGateway, startGlobalGateway } from "./global-gateway";

/**
 * Consistency on replicas, measured: the real Worker (wrangler's `unstable_dev`, workerd) with
 * products in `replica` mode, against a gateway with a Global topology (its own primary and
 * lagging replica redis-servers) and the test stack's Postgres.
 *
 * One client writes a product (PATCH, new price) and reads it at once, round after round:
 * - carrying its sync position (header X-Sync-Token, or the ec_sync cookie as a browser would):
 *   the read waits for the replica to reach the write's position, so it is never older than
 *   the acknowledged write: 0 violations;
 * - not carrying it: the replica still holds the old entry for the replication lag, so the
 *   immediate read is old: violations, counted;
 * and a second client, which never wrote, sees the new value within the lag plus a margin.
 * Categories stay `strict` in the same Worker: there the same rounds read nothing older, with
 * no position at all.
 *
 * Each round starts from the entity cached at its current version where its hits are read (the
 * state in which a stale read is possible at all): without that, a read would miss and load
 * from Postgres, and the test would prove nothing.
 */
const stack = inject("stack");
const TOKEN = `replica-${randomBytes(8).toString("hex")}`;
const ADMIN = `admin-${randomBytes(16).toString("hex")}`;
const PREFIX = `rc${randomBytes(4).toString("hex")}`;
const LAG_MS = 150;
const PRIMARY_LATENCY_MS = 10;
const REPLICA_LATENCY_MS = 2;
const ROUNDS = 20;
/** What a stranger may need beyond the lag: the miss, a load from Postgres, two HTTP hops. */
const STRANGER_MARGIN_MS = 350;

let global: GlobalGateway;
let worker: Unstable_DevWorker;
let product: Probe;
let category: Probe;
/** Each write sets a new value: a price, or a name, carrying this counter. */
let counter = 1_000;

/** What a round writes and reads: one entity, its write, and how to tell a read saw the write. */
interface Probe {
  path: string;
  /** The version of the last acknowledged write (a read without a position may be older). */
  version: number;
  change(n: number): Record<string, unknown>;
  shows(body: Entity, n: number): boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The part of a product or category body the rounds look at. */
interface Entity {
  id: number;
  version: number;
  priceCents?: number;
  name?: string;
}

interface Reply {
  status: number;
  body: Entity;
  cache: string | null;
  syncToken: string | null;
  cookies: string[];
  ms: number;
}

async function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Reply> {
  const started = performance.now();
  const res = await worker.fetch(path, {
    method,
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  expect(res.status, `${method} ${path}: ${text}`).toBeLessThan(300);
  return {
    status: res.status,
    body: JSON.parse(text) as Entity,
    cache: res.headers.get("x-cache"),
    syncToken: res.headers.get("x-sync-token"),
    cookies: res.headers.getSetCookie(),
    ms,
  };
}

/** One client's way of carrying its position between requests (or of not carrying it). */
type Carry = "header" | "cookie" | "none";

class Client {
  private position: string | undefined;
  constructor(private readonly carry: Carry) {}

  headers(): Record<string, string> {
    if (!this.position || this.carry === "none") return {};
    return this.carry === "header"
      ? { "x-sync-token": this.position }
      : { cookie: `ec_sync=${this.position}` };
  }

  /** Keeps what the response handed back, as this client would. */
  keep(reply: Reply): void {
    if (this.carry === "header" && reply.syncToken) this.position = reply.syncToken;
    if (this.carry === "cookie") {
      const cookie = reply.cookies.find((c) => c.startsWith("ec_sync="));
      if (cookie) this.position = cookie.slice("ec_sync=".length).split(";")[0];
    }
  }

  async send(method: string, path: string, body?: unknown): Promise<Reply> {
    const reply = await call(method, path, this.headers(), body);
    this.keep(reply);
    return reply;
  }
}

/**
 * Reads (without a position) until the entity is a HIT at `version`, then lets the replication
 * lag pass: the entry is on the primary (a replica that lacks it answers the hit from the
 * primary's acquire, still a HIT) and, after the lag, on the replica too. A bounded wait.
 */
async function cachedAt(probe: Probe): Promise<void> {
  const { version } = probe;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const reply = await call("GET", probe.path);
    if (reply.cache === "HIT" && reply.body.version === version) break;
    if (Date.now() > deadline) {
      throw new Error(
        `${probe.path} never cached at v${version} (last ${reply.cache} v${reply.body.version})`,
      );
    }
    await sleep(20);
  }
  await sleep(LAG_MS + 50);
}

interface Outcome {
  violations: number;
  readMs: number[];
}

/** ROUNDS of "write a new value, read it at once" by one client. */
async function rounds(probe: Probe, carry: Carry): Promise<Outcome> {
  const client = new Client(carry);
  const outcome: Outcome = { violations: 0, readMs: [] };
  for (let round = 0; round < ROUNDS; round++) {
    await cachedAt(probe);
    const n = ++counter;
    const written = await client.send("PATCH", probe.path, probe.change(n));
    expect(probe.shows(written.body, n)).toBe(true);
    probe.version = written.body.version;
    const read = await client.send("GET", probe.path);
    outcome.readMs.push(read.ms);
    if (read.body.version < probe.version || !probe.shows(read.body, n)) outcome.violations += 1;
  }
  return outcome;
}

/** A category of this file's own, straight into Postgres (the API has no POST /categories). */
async function insertCategory(): Promise<number> {
  const pg = new PgClient({ connectionString: stack.databaseUrl });
  await pg.connect();
  try {
    const result = await pg.query<{ id: number }>(
      "insert into categories (slug, name) values ($1, $2) returning id",
      [`rc-${PREFIX}`, "Replica consistency"],
    );
    const id = result.rows[0]?.id;
    if (id === undefined) throw new Error("category insert returned no row");
    return id;
  } finally {
    await pg.end();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function syncWaits(): Promise<{ count: number; timeouts: number }> {
  const stats = await gatewayControl<{ syncWaits: { count: number; timeouts: number } }>(
    global.gateway.url,
    TOKEN,
    "stats",
  );
  return stats.syncWaits;
}

beforeAll(async () => {
  global = await startGlobalGateway(TOKEN, {
    replicationLagMs: LAG_MS,
    primaryLatencyMs: PRIMARY_LATENCY_MS,
    replicaLatencyMs: REPLICA_LATENCY_MS,
  });
  worker = await startDevWorker({
    UPSTASH_REDIS_REST_URL: global.gateway.url,
    UPSTASH_REDIS_REST_TOKEN: TOKEN,
    ADMIN_TOKEN: ADMIN,
    CACHE_PREFIX: PREFIX,
    CACHE_CONSISTENCY: "products=replica",
    RATE_LIMIT_WRITES: "off",
  });
  const categoryId = await insertCategory();
  const created = await call(
    "POST",
    "/products",
    {},
    { sku: `RC-${PREFIX}`, name: "Replica consistency probe", categoryId, priceCents: counter },
  );
  product = {
    path: `/products/${created.body.id}`,
    version: created.body.version,
    change: (n) => ({ priceCents: n }),
    shows: (body, n) => body.priceCents === n,
  };
  category = {
    path: `/categories/${categoryId}`,
    version: 1, // as inserted
    change: (n) => ({ name: `Replica consistency ${n}` }),
    shows: (body, n) => body.name === `Replica consistency ${n}`,
  };
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await global?.close();
});

describe("products in replica mode, read right after an acknowledged write", () => {
  it("never reads older than its own write when it carries the position in X-Sync-Token", async () => {
    const waitsBefore = await syncWaits();
    const outcome = await rounds(product, "header");
    const waits = await syncWaits();
    console.log(
      `[replica] header: ${outcome.violations}/${ROUNDS} violations, read p50 ${median(outcome.readMs).toFixed(1)} ms; replica waits ${waits.count - waitsBefore.count}`,
    );
    expect(outcome.violations).toBe(0);
    // The reads were held for the replica (that is what made them fresh), none timed out.
    expect(waits.count - waitsBefore.count).toBeGreaterThan(0);
    expect(waits.timeouts).toBe(0);
  }, 120_000);

  it("never reads older than its own write when it carries the position in the ec_sync cookie", async () => {
    const outcome = await rounds(product, "cookie");
    console.log(
      `[replica] cookie: ${outcome.violations}/${ROUNDS} violations, read p50 ${median(outcome.readMs).toFixed(1)} ms`,
    );
    expect(outcome.violations).toBe(0);
  }, 120_000);

  it("reads older than its own write when it does not carry the position (counted)", async () => {
    const outcome = await rounds(product, "none");
    console.log(
      `[replica] none: ${outcome.violations}/${ROUNDS} violations, read p50 ${median(outcome.readMs).toFixed(1)} ms`,
    );
    // A 150 ms lag against an immediate read: the replica still holds the old entry.
    expect(outcome.violations).toBeGreaterThanOrEqual(1);
  }, 120_000);

  it("shows a client that never wrote the new value within the lag plus a margin", async () => {
    const writer = new Client("header");
    const delays: number[] = [];
    let staleReads = 0;
    for (let round = 0; round < 5; round++) {
      await cachedAt(product);
      const written = await writer.send("PATCH", product.path, product.change(++counter));
      product.version = written.body.version;
      const acknowledged = performance.now();
      for (;;) {
        // A fresh stranger each time: it never carries a position.
        const read = await call("GET", product.path);
        if (read.body.version >= product.version) break;
        staleReads += 1;
        expect(performance.now() - acknowledged).toBeLessThan(5_000);
        await sleep(5);
      }
      delays.push(performance.now() - acknowledged);
    }
    console.log(
      `[replica] stranger: new value after ${delays.map((d) => d.toFixed(0)).join(", ")} ms (lag ${LAG_MS} ms); ${staleReads} older reads before`,
    );
    for (const delay of delays) expect(delay).toBeLessThan(LAG_MS + STRANGER_MARGIN_MS);
  }, 120_000);
});

describe("categories in strict mode (same Worker)", () => {
  it("never reads older than an acknowledged write, with no position carried", async () => {
    const outcome = await rounds(category, "none");
    console.log(
      `[replica] strict, none: ${outcome.violations}/${ROUNDS} violations, read p50 ${median(outcome.readMs).toFixed(1)} ms`,
    );
    expect(outcome.violations).toBe(0);
  }, 120_000);
});
