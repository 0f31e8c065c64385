import { inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cacheOutbox, type JsonValue } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import {
  MAX_OUTBOX_ATTEMPTS,
  PREVIEW_CHARS,
  recordOutage,
  recordRowFailures,
} from "../../src/domain/outbox";
import { drainOutbox } from "../../src/jobs/warm";
import { api, apiFor, type ErrorBody } from "./api";
import { withDb } from "./db";
import { withServices } from "./helpers";
import { stack, testRedis } from "./stack";

/**
 * GET /admin/outbox lists what is parked (or still pending) and why; POST …/{id}/retry gives a
 * row back to the drains; DELETE …/{id} discards it. Real Worker, Postgres and gateway.
 */
const run = Date.now().toString(36);
const prefix = `ao${run}`;
const admin = apiFor(prefix, { admin: true });
const cache = new EdgeCache({ redis: testRedis(), prefix });

interface Row {
  id: number;
  attempts: number;
  parked: boolean;
  lastError: string | null;
  queuedAt: string | null;
  continuedAt: string | null;
  eventText: string;
  eventChars: number;
  deadLetterId: string | null;
}
type Page = { items: Row[]; nextCursor: number | null };

async function insert(
  rows: {
    event: Record<string, unknown>;
    parked?: string;
    continued?: boolean;
    queued?: boolean;
  }[],
  rowPrefix = prefix,
): Promise<number[]> {
  const inserted = await withDb((db) =>
    db
      .insert(cacheOutbox)
      .values(
        rows.map((r) => ({
          event: r.event as { [key: string]: JsonValue },
          prefix: rowPrefix,
          createdAt: sql`now() - interval '1 minute'`,
          ...(r.parked ? { attempts: MAX_OUTBOX_ATTEMPTS, lastError: r.parked } : {}),
          ...(r.continued ? { continuedAt: sql`now()` } : {}),
          ...(r.queued ? { queuedAt: sql`now()` } : {}),
        })),
      )
      .returning({ id: cacheOutbox.id }),
  );
  return inserted.map((r) => r.id);
}

const rowsOf = (ids: number[]) =>
  withDb((db) => db.select().from(cacheOutbox).where(inArray(cacheOutbox.id, ids)));

describe("GET /admin/outbox", () => {
  it("lists this deployment's parked rows oldest first with why, page by page; pending ones on request", async () => {
    const parked = await insert([
      { event: { keys: ["a:1"], origin: "t" }, parked: "apply failed: WRONGTYPE" },
      { event: { deadLetter: "m1", body: "garbage" }, parked: "dead letter m1: not an event" },
      { event: { keys: ["a:3"], origin: "t" }, parked: "apply failed: WRONGTYPE" },
    ]);
    const [pending] = await insert([{ event: { keys: ["a:4"], origin: "t" } }]);
    await insert([{ event: { keys: ["a:5"], origin: "t" }, parked: "theirs" }], `${prefix}x`);

    const first = await admin<Page>("GET", "/admin/outbox?limit=2");
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-control")).toBe("no-store");
    expect(first.body.items.map((r) => r.id)).toEqual(parked.slice(0, 2));
    expect(first.body.items[1]).toMatchObject({
      attempts: MAX_OUTBOX_ATTEMPTS,
      parked: true,
      lastError: "dead letter m1: not an event",
      queuedAt: null,
      continuedAt: null,
    });
    expect(JSON.parse(first.body.items[1]?.eventText ?? "")).toEqual({
      deadLetter: "m1",
      body: "garbage",
    });
    const second = await admin<Page>(`GET`, `/admin/outbox?limit=2&after=${first.body.nextCursor}`);
    expect(second.body.items.map((r) => r.id)).toEqual(parked.slice(2));
    expect(second.body.nextCursor).toBeNull();

    const still = await admin<Page>("GET", "/admin/outbox?state=pending&limit=100");
    expect(still.body.items.map((r) => r.id)).toContain(pending);
    expect(still.body.items.every((r) => r.attempts < MAX_OUTBOX_ATTEMPTS)).toBe(true);
  });

  it("refuses a bad query with 400 and a missing token with 401", async () => {
    const bad = await admin<ErrorBody>("GET", "/admin/outbox?state=lost&limit=0");
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("validation_failed");
    const anonymous = await api("GET", "/admin/outbox", { prefix });
    expect(anonymous.status).toBe(401);
    const retry = await api("POST", "/admin/outbox/1/retry", { prefix });
    expect(retry.status).toBe(401);
    // Postgres down: 503 with Retry-After, like every route that needs it.
    const down = await admin<ErrorBody>("GET", "/admin/outbox", {
      env: { DATABASE_URL: stack.deadPostgresUrl },
    });
    expect(down.status).toBe(503);
    expect(down.body.error.code).toBe("database_unavailable");
    expect(down.headers.get("retry-after")).not.toBeNull();
  });
});

describe("POST /admin/outbox/{id}/retry and DELETE /admin/outbox/{id}", () => {
  it("a parked row retried is applied by the next drain; a discarded one leaves the lag, marked", async () => {
    await cache.set("fixed:1", "stale");
    const [fixed, hopeless] = await insert([
      { event: { keys: ["fixed:1"], origin: "t" }, parked: "apply failed: WRONGTYPE" },
      { event: { deadLetter: "m2", body: 42 }, parked: "dead letter m2: not an event" },
    ]);
    if (!fixed || !hopeless) throw new Error("rows not inserted");

    const retried = await admin<{ id: number; retried: boolean }>(
      "POST",
      `/admin/outbox/${fixed}/retry`,
    );
    expect(retried.status).toBe(200);
    expect(retried.body).toEqual({ id: fixed, retried: true });
    await withServices(prefix, {}, (s) => drainOutbox(s, { olderThanMs: 0 }));
    expect(await cache.get("fixed:1")).toBeNull();

    const discarded = await admin<{ id: number; discarded: boolean }>(
      "DELETE",
      `/admin/outbox/${hopeless}`,
    );
    expect(discarded.body).toEqual({ id: hopeless, discarded: true });
    const rows = new Map((await rowsOf([fixed, hopeless])).map((r) => [r.id, r]));
    expect(rows.get(fixed)?.processedAt).toBeInstanceOf(Date);
    expect(rows.get(hopeless)?.processedAt).toBeInstanceOf(Date);
    expect(rows.get(hopeless)?.lastError).toBe(
      "discarded by an admin: dead letter m2: not an event",
    );
    const listed = await admin<Page>("GET", "/admin/outbox?limit=100");
    expect(listed.body.items.map((r) => r.id)).not.toContain(hopeless);

    // Settled rows: 409; unknown ids and another deployment's rows: 404.
    for (const [method, path] of [
      ["POST", `/admin/outbox/${fixed}/retry`],
      ["DELETE", `/admin/outbox/${hopeless}`],
    ] as const) {
      const again = await admin<ErrorBody>(method, path);
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe("conflict");
    }
    const [theirs] = await insert(
      [{ event: { keys: ["t:1"], origin: "t" }, parked: "x" }],
      `${prefix}y`,
    );
    for (const id of [theirs, 2 ** 40]) {
      const missing = await admin<ErrorBody>("POST", `/admin/outbox/${id}/retry`);
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe("not_found");
    }
  });
});

describe("what an operator may not do (helper audit)", () => {
  it("retries and discards parked rows only: a row a queue chain or an outage hand-over holds stays theirs", async () => {
    // Retrying one cleared continued_at / queued_at: its purges ran again from cursor 0, or the
    // next drain of the outage sent it to the queue once more.
    const [chained, handed] = await insert([
      { event: { patterns: ["chain:*"], origin: "t" }, continued: true },
      { event: { keys: ["handed:1"], origin: "t" }, queued: true },
    ]);
    for (const id of [chained, handed]) {
      for (const [method, path] of [
        ["POST", `/admin/outbox/${id}/retry`],
        ["DELETE", `/admin/outbox/${id}`],
      ] as const) {
        const res = await admin<ErrorBody>(method, path);
        expect(res.status).toBe(409);
        expect(res.body.error.message).toContain("not parked");
      }
    }
    const rows = new Map((await rowsOf([chained ?? 0, handed ?? 0])).map((r) => [r.id, r]));
    expect(rows.get(chained ?? 0)?.continuedAt).toBeInstanceOf(Date);
    expect(rows.get(handed ?? 0)?.queuedAt).toBeInstanceOf(Date);
    const pending = await admin<Page>("GET", "/admin/outbox?state=pending&limit=100");
    const listed = pending.body.items.find((r) => r.id === chained);
    expect(listed?.continuedAt).not.toBeNull();
    expect(listed?.parked).toBe(false);
  });

  it("refuses to retry a dead letter that is not an event (only discard settles it), keeping why it was parked", async () => {
    const [id] = await insert([
      {
        event: { deadLetter: "m9", body: "x" },
        parked: "dead letter m9: not an invalidation event",
      },
    ]);
    const res = await admin<ErrorBody>("POST", `/admin/outbox/${id}/retry`);
    expect(res.status).toBe(409);
    expect(res.body.error.message).toMatch(/not an event a drain could apply .*discard it/);
    const [row] = await rowsOf([id ?? 0]);
    expect(row?.attempts).toBe(MAX_OUTBOX_ATTEMPTS);
    expect(row?.lastError).toBe("dead letter m9: not an invalidation event");
  });

  it("a drain's failure record never lands on a row settled meanwhile", async () => {
    const [id] = await insert([{ event: { tags: ["gone"], origin: "t" }, parked: "apply failed" }]);
    expect((await admin("DELETE", `/admin/outbox/${id}`)).status).toBe(200);
    await withServices(prefix, {}, async (s) => {
      await recordRowFailures(s.db, prefix, [{ id: id ?? 0, error: "apply failed: WRONGTYPE" }]);
      await recordOutage(s.db, prefix, [id ?? 0], "redis down");
    });
    const [row] = await rowsOf([id ?? 0]);
    expect(row?.lastError).toBe("discarded by an admin: apply failed");
    expect(row?.attempts).toBe(MAX_OUTBOX_ATTEMPTS);
  });

  it("keeps a page small however large the rows (each event previewed); GET /admin/outbox/{id} has one whole", async () => {
    // 100 dead letters of 127 KB made a 12 MB page (38 MB of control characters): here 20 K
    // control characters each, 12 MB of JSON escapes for a page before.
    const body = "\u0001".repeat(20_000);
    const local = `${prefix}big`;
    const ids = await insert(
      Array.from({ length: 100 }, (_, i) => ({
        event: { deadLetter: `big${i}`, body },
        parked: "dead letter: not an invalidation event",
      })),
      local,
    );
    const res = await api<Page>("GET", "/admin/outbox?limit=100", { prefix: local, admin: true });
    expect(res.status).toBe(200);
    expect(JSON.stringify(res.body).length).toBeLessThan(1_000_000);
    const first = res.body.items[0];
    expect(first?.eventText.length).toBe(PREVIEW_CHARS);
    expect(first?.eventChars).toBeGreaterThan(120_000);

    const one = await api<Row & { event: { body: string }; processedAt: string | null }>(
      "GET",
      `/admin/outbox/${ids[0]}`,
      { prefix: local, admin: true },
    );
    expect(one.status).toBe(200);
    expect(one.body.event.body).toBe(body);
    expect(one.body.processedAt).toBeNull();
    const other = await admin<ErrorBody>("GET", `/admin/outbox/${ids[0]}`);
    expect(other.status).toBe(404);
  });

  it("reads numbers strictly (no 1e2, 0x10 or empty), and documents them as the integers they are", async () => {
    for (const q of [
      "limit=1e2",
      "after=0x10",
      "after=",
      "limit=0",
      "limit=101",
      "after=-1",
      "state=PARKED",
    ]) {
      const res = await admin<ErrorBody>("GET", `/admin/outbox?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
    }
    type Param = { name: string; schema: Record<string, unknown> };
    type Op = { parameters: Param[]; responses: Record<string, { headers?: object }> };
    const doc = await api<{ paths: Record<string, Record<string, Op>> }>("GET", "/openapi.json", {
      prefix,
    });
    const list = doc.body.paths["/admin/outbox"]?.get;
    const retry = doc.body.paths["/admin/outbox/{id}/retry"]?.post;
    expect(list?.parameters.find((p) => p.name === "after")?.schema).toMatchObject({
      type: "integer",
      minimum: 0,
    });
    expect(retry?.parameters.find((p) => p.name === "id")?.schema.pattern).toBe("^\\d{1,16}$");
    for (const op of [list, retry, doc.body.paths["/admin/invalidate"]?.post]) {
      expect(op?.responses["503"]?.headers).toHaveProperty("Retry-After");
    }
  });
});
