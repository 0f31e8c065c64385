import { eq } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { users } from "../../db/schema";
import { type UserJson, userWarmable } from "../../src/domain/users";
import { api, type ErrorBody } from "./api";
import { withDb } from "./db";
import { clearPrefix, workerCache } from "./stack";

const prefix = "t_users";

let serial = 0;
/** A user of this file's own: tests that write never touch the seeded rows. */
async function newUser(tier = "standard"): Promise<UserJson> {
  const tag = `${Date.now().toString(36)}-${(serial++).toString(36)}`;
  const [row] = await withDb((db) =>
    db
      .insert(users)
      .values({ email: `t-users-${tag}@example.com`, name: `Test ${tag}`, tier })
      .returning(),
  );
  if (!row) throw new Error("insert returned no row");
  return { ...row, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
}

const get = (id: number | string, headers?: Record<string, string>) =>
  api<UserJson>("GET", `/users/${id}`, { prefix, headers });
const patch = (id: number | string, body: unknown, headers?: Record<string, string>) =>
  api<UserJson>("PATCH", `/users/${id}`, { prefix, body, headers });

beforeAll(async () => {
  // The test database is recreated each run but Redis is not: version keys left by an earlier
  // run would outrank this run's rows, which reuse the same ids.
  await clearPrefix(prefix);
});

describe("GET /users/:id", () => {
  it("misses once, then hits with the same body and ETag", async () => {
    const user = await newUser("premium");
    const first = await get(user.id);
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache")).toBe("MISS");
    expect(first.headers.get("etag")).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/);
    expect(first.body).toEqual(user);

    const second = await get(user.id);
    expect(second.status).toBe(200);
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.headers.get("etag")).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/);
    expect(second.body).toEqual(user);
  });

  it("answers 304 when If-None-Match names the current ETag", async () => {
    const user = await newUser();
    const held = (await get(user.id)).headers.get("etag") ?? "";
    expect(held).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/);
    const same = await get(user.id, { "if-none-match": held });
    expect(same.status).toBe(304);
    expect(same.body).toBeNull();
    expect(same.headers.get("etag")).toBe(held);

    await patch(user.id, { tier: "enterprise" });
    const changed = await get(user.id, { "if-none-match": held });
    expect(changed.status).toBe(200);
    expect(changed.body.tier).toBe("enterprise");
  });

  it("answers 404 for a user that does not exist, from a short negative entry the second time", async () => {
    const res = await api<ErrorBody>("GET", "/users/2000000000", { prefix });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
    expect(res.headers.get("x-cache")).toBe("MISS");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const again = await api<ErrorBody>("GET", "/users/2000000000", { prefix });
    expect(again.status).toBe(404);
    expect(again.headers.get("x-cache")).toBe("HIT");
    // Cached as null under version 0, for at most 30 s (+ jitter), leaving no version key.
    const engine = workerCache(prefix);
    const seen = await engine.inspect("user:2000000000", "user:2000000000");
    expect(seen.entry).toMatchObject({ value: null, version: 0 });
    expect(seen.pttl).toBeLessThanOrEqual(33_000);
    expect(seen.version).toBeNull();
  });

  it("is private: personal data never goes to a shared cache, and always revalidates", async () => {
    const user = await newUser();
    const res = await get(user.id);
    expect(res.headers.get("cache-control")).toBe("private, no-cache");
    const notModified = await get(user.id, { "if-none-match": res.headers.get("etag") ?? "" });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("cache-control")).toBe("private, no-cache");
  });

  it.each(["0", "abc", "-3", "1.5", "2147483648"])("rejects the id %s with 400", async (id) => {
    const res = await api<ErrorBody>("GET", `/users/${id}`, { prefix });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.issues?.[0]?.path).toBe("id");
  });
});

describe("PATCH /users/:id", () => {
  it("writes through: the next GET is a HIT with exactly the PATCH response and ETag", async () => {
    const user = await newUser();
    await get(user.id); // cached at v1

    const res = await patch(user.id, { name: "Ada Lovelace", tier: "premium" });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toMatch(/^"v2\.[A-Za-z0-9_-]{16}"$/);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.body).toMatchObject({ id: user.id, name: "Ada Lovelace", tier: "premium" });
    expect(res.body.version).toBe(2);

    const after = await get(user.id);
    expect(after.status).toBe(200);
    expect(after.headers.get("x-cache")).toBe("HIT");
    expect(after.headers.get("etag")).toBe(res.headers.get("etag"));
    expect(after.body).toEqual(res.body);

    // And the database agrees with the cache.
    const [row] = await withDb((db) => db.select().from(users).where(eq(users.id, user.id)));
    expect(row).toMatchObject({ name: "Ada Lovelace", tier: "premium", version: 2 });
  });

  it("reads its own write even when the user was never cached before", async () => {
    const user = await newUser();
    const res = await patch(user.id, { email: `Renamed-${user.id}@Example.com` });
    expect(res.status).toBe(200);
    expect(res.body.email).toBe(`renamed-${user.id}@example.com`);
    const after = await get(user.id);
    expect(after.headers.get("x-cache")).toBe("HIT");
    expect(after.body.email).toBe(`renamed-${user.id}@example.com`);
  });

  it("honours If-Match: 412 on a stale version, success on the current one", async () => {
    const user = await newUser();
    expect((await patch(user.id, { name: "First" })).status).toBe(200); // now v2

    const stale = await api<ErrorBody>("PATCH", `/users/${user.id}`, {
      prefix,
      body: { name: "Lost update" },
      headers: { "if-match": '"v1"' },
    });
    expect(stale.status).toBe(412);
    expect(stale.body.error.code).toBe("precondition_failed");
    expect(stale.body.error.details).toMatchObject({ currentVersion: 2, etag: '"v2"' });
    expect(stale.headers.get("etag")).toBe('"v2"');

    // A weak tag names its version too (Cloudflare weakens the ETags it compresses): an old one
    // still fails, the current one is taken.
    const weak = await patch(user.id, { name: "Weak" }, { "if-match": 'W/"v1"' });
    expect(weak.status).toBe(412);

    const ok = await patch(user.id, { name: "Second" }, { "if-match": '"v1", W/"v2"' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ name: "Second", version: 3 });

    const any = await patch(user.id, { name: "Third" }, { "if-match": "*" });
    expect(any.status).toBe(200);

    // If-None-Match: * = "only if it does not exist": the user exists, so nothing is written.
    const absentOnly = await patch(user.id, { name: "Never" }, { "if-none-match": "*" });
    expect(absentOnly.status).toBe(412);
    expect(any.body.version).toBe(4);

    const after = await get(user.id);
    expect(after.body).toMatchObject({ name: "Third", version: 4 });
    expect(after.headers.get("x-cache")).toBe("HIT");

    // If-None-Match naming the current version (compared weakly): 412, nothing written; naming
    // only older ones: written.
    const current = await patch(user.id, { name: "Never" }, { "if-none-match": 'W/"v4"' });
    expect(current.status).toBe(412);
    expect(current.headers.get("etag")).toBe('"v4"');
    const older = await patch(user.id, { name: "Fourth" }, { "if-none-match": '"v1", "v3"' });
    expect(older.status).toBe(200);
    expect(older.body).toMatchObject({ name: "Fourth", version: 5 });
    // Both headers: each must hold.
    const both = await patch(
      user.id,
      { name: "Never" },
      { "if-match": '"v5"', "if-none-match": '"v5"' },
    );
    expect(both.status).toBe(412);
  });

  it("a 412 names the header whose check failed (If-Match is evaluated first)", async () => {
    const user = await newUser(); // v1
    const cases: [Record<string, string>, string][] = [
      [{ "if-none-match": '"v1"' }, `If-None-Match names the current version of user ${user.id}`],
      [{ "if-match": '"v9"' }, `If-Match does not name the current version of user ${user.id}`],
      [
        { "if-match": '"v1"', "if-none-match": '"v1"' },
        `If-None-Match names the current version of user ${user.id}`,
      ],
      [
        { "if-match": '"v9"', "if-none-match": '"v1"' },
        `If-Match does not name the current version of user ${user.id}`,
      ],
      [
        { "if-match": "*", "if-none-match": "*" },
        `If-None-Match: * asks for user ${user.id} not to exist, and it does`,
      ],
      [
        { "if-match": '"v9"', "if-none-match": "*" },
        `If-Match does not name the current version of user ${user.id}`,
      ],
    ];
    for (const [headers, message] of cases) {
      const res = await api<ErrorBody>("PATCH", `/users/${user.id}`, {
        prefix,
        body: { name: "Never" },
        headers,
      });
      expect(res.status, JSON.stringify(headers)).toBe(412);
      expect(res.body.error.message, JSON.stringify(headers)).toBe(message);
      expect(res.body.error.details).toMatchObject({ currentVersion: 1, etag: '"v1"' });
    }
    expect((await get(user.id)).body).toMatchObject({ version: 1, name: user.name });
  });

  it("never lets an older write replace a newer one in the cache", async () => {
    const user = await newUser();
    await get(user.id);
    const first = await patch(user.id, { name: "Older" });
    const second = await patch(user.id, { name: "Newer" });
    expect(first.body.version).toBe(2);
    expect(second.body.version).toBe(3);

    const cached = await get(user.id);
    expect(cached.headers.get("x-cache")).toBe("HIT");
    expect(cached.body).toEqual(second.body);

    // The first write's cache update arriving late (a slow isolate, a redelivered event) is
    // refused by the version CAS and changes nothing.
    const engine = workerCache(prefix);
    const late = await engine.writeThrough(`user:${user.id}`, first.body, first.body.version);
    expect(late).toEqual({ written: false, reason: "version" });
    await engine.apply({ versions: { [`user:${user.id}`]: first.body.version } });

    const still = await get(user.id);
    expect(still.headers.get("x-cache")).toBe("HIT");
    expect(still.headers.get("etag")).toMatch(/^"v3\.[A-Za-z0-9_-]{16}"$/);
    expect(still.body).toEqual(second.body);
    const inspection = await engine.inspect(`user:${user.id}`, `user:${user.id}`);
    expect(inspection.version).toBe(3);
    expect(inspection.entry?.version).toBe(3);
  });

  it("answers 409 when the email belongs to another user, and changes nothing", async () => {
    const owner = await newUser();
    const other = await newUser();
    await get(other.id);
    const res = await api<ErrorBody>("PATCH", `/users/${other.id}`, {
      prefix,
      body: { email: owner.email.toUpperCase() },
    });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("email_taken");
    const after = await get(other.id);
    expect(after.headers.get("x-cache")).toBe("HIT");
    expect(after.body).toEqual(other);
  });

  it("answers 404 for a user that does not exist", async () => {
    const res = await api<ErrorBody>("PATCH", "/users/2000000001", {
      prefix,
      body: { name: "Nobody" },
      headers: { "if-match": '"v1"' },
    });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });

  it.each([
    ["an unknown field", { name: "X", role: "admin" }, "(root)", /role/],
    ["a bad tier", { tier: "gold" }, "tier", /standard/],
    ["a bad email", { email: "not-an-email" }, "email", /email/i],
    ["an empty name", { name: "" }, "name", /./],
    ["a blank name", { name: " \t " }, "name", /blank/],
    ["no field at all", {}, "(root)", /at least one/],
    ["a non-object body", [1, 2], "(root)", /object/],
  ])("rejects %s with 400 and field-level details", async (_, body, path, message) => {
    const user = await newUser();
    const res = await api<ErrorBody>("PATCH", `/users/${user.id}`, { prefix, body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details?.target).toBe("json");
    const issue = res.body.error.details?.issues?.find((i) => i.path === path);
    expect(issue?.message).toMatch(message);
    // Nothing was written.
    const [row] = await withDb((db) => db.select().from(users).where(eq(users.id, user.id)));
    expect(row?.version).toBe(1);
  });

  it("rejects malformed JSON and an empty body with 400 and details", async () => {
    const user = await newUser();
    for (const body of ['{"name": "x"', ""]) {
      const res = await api<ErrorBody>("PATCH", `/users/${user.id}`, {
        prefix,
        body,
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details?.issues?.length).toBeGreaterThan(0);
    }
  });

  it.each(["0", "abc"])("rejects the id %s with 400", async (id) => {
    const res = await api<ErrorBody>("PATCH", `/users/${id}`, { prefix, body: { name: "X" } });
    expect(res.status).toBe(400);
    expect(res.body.error.details?.issues?.[0]?.path).toBe("id");
  });
});

describe("userWarmable", () => {
  it("recognises only its own keys", () => {
    expect(userWarmable.parse("user:12")).toBe(12);
    expect(userWarmable.key(12)).toBe("user:12");
    for (const key of ["user:0", "user:012", "user:12x", "user:99999999999", "product:12"]) {
      expect(userWarmable.parse(key)).toBeNull();
    }
  });

  it("loads many users in one query, in the shape and with the options of the read path", async () => {
    const user = await newUser();
    const loaded = await withDb((db) => userWarmable.loadMany(db, [user.id, 2_000_000_002]));
    expect([...loaded.keys()]).toEqual([user.id]);
    expect(loaded.get(user.id)).toEqual(user);
    expect(await withDb((db) => userWarmable.loadMany(db, []))).toEqual(new Map());

    // A warmed entry is what GET /users/:id would have cached: the route then hits it.
    const engine = workerCache(prefix);
    const value = loaded.get(user.id);
    if (!value) throw new Error("not loaded");
    const options = userWarmable.entry(value);
    expect(options).toMatchObject({ versionKey: `user:${user.id}`, ttl: 600_000 });
    await engine.set(userWarmable.key(user.id), value, options);
    const res = await get(user.id);
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(res.headers.get("etag")).toMatch(/^"v1\.[A-Za-z0-9_-]{16}"$/);
    expect(res.body).toEqual(user);
  });
});
