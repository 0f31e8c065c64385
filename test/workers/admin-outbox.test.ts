import { inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cacheOutbox, type JsonValue } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import { MAX_OUTBOX_ATTEMPTS } from "../../src/domain/outbox";
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
  lastError: string | null;
  event: unknown;
  deadLetterId: string | null;
}
type Page = { items: Row[]; nextCursor: number | null };

async function insert(
  rows: { event: Record<string, unknown>; parked?: string }[],
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
      lastError: "dead letter m1: not an event",
      event: { deadLetter: "m1", body: "garbage" },
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
