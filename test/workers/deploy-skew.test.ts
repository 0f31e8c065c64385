import { eq, inArray, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { cacheOutbox, categories, type JsonValue, products, users } from "../../db/schema";
import { EdgeCache } from "../../src/cache";
import {
  type CategoryDetail,
  categoryEntryOptions,
  categoryWriteChange,
} from "../../src/domain/categories";
import {
  type ProductDetail,
  productEntryOptions,
  productKey,
  productWarmable,
  productWriteChange,
} from "../../src/domain/products";
import { keysOfEveryShape, SHAPES } from "../../src/domain/shapes";
import { type UserJson, userEntry, userKey } from "../../src/domain/users";
import { applyChange, mergeChanges } from "../../src/jobs/apply-event";
import { processPurgeBatch } from "../../src/jobs/purge";
import { drainOutbox } from "../../src/jobs/warm";
import { api, apiFor, postProduct } from "./api";
import { insertCategory, withDb } from "./db";
import { consumeBatch, purgeBatch, testEnv, withServices } from "./helpers";
import { clearPrefix, testRedis, workerCache } from "./stack";

/**
 * What a deploy does to the app: for minutes to hours two releases serve side by side (a
 * gradual deployment; a plain `wrangler deploy` still lets the old release's requests, queue
 * batches and cron ticks finish), and Redis keeps what the previous release cached. The
 * previous release is modelled by what it leaves in Redis: an entry of the same version in its
 * own shape (its fill, write-through or warmer wrote it), or its own CACHE_PREFIX.
 */
const run = Date.now().toString(36);
const prefix = `ds${run}`;
const cache = workerCache(prefix);

beforeAll(async () => {
  await clearPrefix(prefix);
});

/** A product named "Before" in a category of its own, created through `release`. */
async function newProduct(release = apiFor(prefix)) {
  const category = await insertCategory({ slug: `ds-${run}-${++seq}`, name: "Skewed" });
  const product = await postProduct(release, {
    sku: `DS-${run}-${++seq}`,
    name: "Before",
    categoryId: category,
    priceCents: 100,
  });
  return { category, product };
}

/** A value in the previous release's shape, which this release's types do not describe. */
const asPrevious = <T>(value: object) => value as T;

let seq = 0;
async function newUser(): Promise<UserJson> {
  const tag = `${run}-${++seq}`;
  const [row] = await withDb((db) =>
    db
      .insert(users)
      .values({ email: `ds-${tag}@example.com`, name: `Skew ${tag}`, tier: "premium" })
      .returning(),
  );
  if (!row) throw new Error("insert returned no row");
  return { ...row, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
}

describe("HTTP validators across a change of the cached shape", () => {
  it("a user: a client holding the body the previous release served gets the current one, not a 304", async () => {
    const user = await newUser();
    // The previous release's shape of the same row at the same version (here: no `tier`),
    // written by its fill or write-through.
    const { tier: _dropped, ...previous } = user;
    await cache.writeThrough(
      `user:${user.id}`,
      asPrevious<UserJson>(previous),
      user.version,
      userEntry(user.id),
    );
    const old = await api<UserJson>("GET", `/users/${user.id}`, { prefix });
    expect(old.body).toEqual(previous);
    const held = old.headers.get("etag");
    expect(held).not.toBeNull();

    // That entry ends (its TTL; here deleted without a version change) and this release
    // loads the row in its own shape: a different body at the same version.
    await cache.invalidate(`user:${user.id}`);
    const current = await api<UserJson>("GET", `/users/${user.id}`, { prefix });
    expect(current.body).toEqual(user);

    const revalidated = await api<UserJson>("GET", `/users/${user.id}`, {
      prefix,
      headers: { "if-none-match": held ?? "" },
    });
    // A 304 here tells the client its copy without `tier` is current, until the row changes.
    expect(revalidated.status).toBe(200);
    expect(revalidated.body).toEqual(user);
    expect(revalidated.headers.get("etag")).not.toBe(held);
  });

  it("a category: the same", async () => {
    const id = await insertCategory({ slug: `ds-${run}-${++seq}`, name: "Skewed" });
    const fresh = await api<Record<string, unknown>>("GET", `/categories/${id}`, { prefix });
    expect(fresh.status).toBe(200);
    const { description: _dropped, ...previous } = fresh.body;
    await cache.invalidate(`category:${id}`);
    await cache.writeThrough(
      `category:${id}`,
      asPrevious<CategoryDetail>(previous),
      1,
      categoryEntryOptions(id),
    );
    const old = await api("GET", `/categories/${id}`, { prefix });
    expect(old.body).toEqual(previous);
    const held = old.headers.get("etag") ?? "";
    await cache.invalidate(`category:${id}`);
    const revalidated = await api("GET", `/categories/${id}`, {
      prefix,
      headers: { "if-none-match": held },
    });
    expect(revalidated.status).toBe(200);
    expect(revalidated.body).toEqual(fresh.body);
  });

  it("a write answered with the new validator is still conditioned on the version (If-Match)", async () => {
    const user = await newUser();
    const read = await api<UserJson>("GET", `/users/${user.id}`, { prefix });
    const etag = read.headers.get("etag") ?? "";
    const ok = await api<UserJson>("PATCH", `/users/${user.id}`, {
      prefix,
      body: { name: "Conditioned" },
      headers: { "if-match": etag },
    });
    expect(ok.status).toBe(200);
    const lost = await api("PATCH", `/users/${user.id}`, {
      prefix,
      body: { name: "Too late" },
      headers: { "if-match": etag },
    });
    expect(lost.status).toBe(412);
  });
});

/**
 * Shape generations (src/domain/shapes.ts): the release that changes a cached value's shape
 * bumps the entity's generation, and its entries live under keys of that generation
 * (`user:42@2`) while the version keys and tags stay shared. Here the other release is
 * modelled as the same domain code one generation up: its keys, its entry options, its write's
 * cache change (what its write applies, or its queue consumer or drain does after it).
 */
describe("shape generations: two releases whose cached shapes differ", () => {
  const other = (generation: number) => generation + 1;

  it("this release never serves an entry the other release cached in its own shape", async () => {
    const user = await newUser();
    const { tier: _dropped, ...previous } = user;
    // The other release's fill, write-through or warmer, at the same version.
    await cache.writeThrough(
      userKey(user.id, other(SHAPES.user)),
      asPrevious<UserJson>(previous),
      user.version,
      userEntry(user.id),
    );
    const read = await api<UserJson>("GET", `/users/${user.id}`, { prefix });
    expect(read.body).toEqual(user);
  });

  it("a write of this release invalidates the other release's entries (the version key is shared)", async () => {
    const { product } = await newProduct();
    const theirKey = productKey(product.id, other(SHAPES.product));
    const theirs = () =>
      cache.getOrLoad<ProductDetail | null>(
        theirKey,
        async () => (await api<ProductDetail>("GET", `/products/${product.id}`, { prefix })).body,
        productEntryOptions(product.id),
      );
    // This release reads it first: the category's tag counter exists before their load starts
    // (a counter that appears during a load refuses its fill).
    await api("GET", `/products/${product.id}`, { prefix });
    expect((await theirs()).value?.name).toBe("Before");
    expect((await theirs()).status).toBe("HIT");
    const write = await api<ProductDetail>("PATCH", `/products/${product.id}`, {
      prefix,
      body: { name: "After" },
    });
    expect(write.status).toBe(200);
    // Its key delete named this release's generation only; the version advance covers theirs.
    const after = await theirs();
    expect(after.status).not.toBe("HIT");
    expect(after.value?.name).toBe("After");
  });

  it("a write of the other release invalidates this release's detail and lists (version key and tags)", async () => {
    const { category, product } = await newProduct();
    const detail = `/products/${product.id}`;
    const list = `/products?category=${category}`;
    await api("GET", detail, { prefix });
    await api("GET", list, { prefix });
    expect((await api("GET", detail, { prefix })).headers.get("x-cache")).toBe("HIT");
    expect((await api("GET", list, { prefix })).headers.get("x-cache")).toBe("HIT");
    // The other release's write: its row change, then its cache change under its generation.
    const [row] = await withDb((db) =>
      db
        .update(products)
        .set({ name: "After", version: sql`${products.version} + 1` })
        .where(eq(products.id, product.id))
        .returning({ version: products.version }),
    );
    if (!row) throw new Error("the product vanished");
    const change = productWriteChange(product.id, row.version, other(SHAPES.product));
    await applyChange(cache, mergeChanges([change]).change);
    expect((await api<ProductDetail>("GET", detail, { prefix })).body.name).toBe("After");
    const page = await api<{ items: ProductDetail[] }>("GET", list, { prefix });
    expect(page.body.items.map((p) => p.name)).toEqual(["After"]);
  });

  it("a category write of the other release invalidates this release's list of every category (its tag, not only its key)", async () => {
    const id = await insertCategory({ slug: `sg-${run}-${++seq}`, name: "Before" });
    const names = async () =>
      (await api<CategoryDetail[]>("GET", "/categories", { prefix })).body
        .filter((c) => c.id === id)
        .map((c) => c.name);
    expect(await names()).toEqual(["Before"]);
    expect((await api("GET", "/categories", { prefix })).headers.get("x-cache")).toBe("HIT");
    const [row] = await withDb((db) =>
      db
        .update(categories)
        .set({ name: "After", version: sql`${categories.version} + 1` })
        .where(eq(categories.id, id))
        .returning({ version: categories.version }),
    );
    if (!row) throw new Error("the category vanished");
    // Its key delete is `categories:all@2`: before the `categories` tag, this list stayed.
    const change = categoryWriteChange(id, row.version, {
      category: other(SHAPES.category),
      categoryList: other(SHAPES.categoryList),
    });
    await applyChange(cache, mergeChanges([change]).change);
    expect(await names()).toEqual(["After"]);
  });

  it("the warmer warms only this release's generation: a hot key of the other one is not ours", () => {
    expect(productWarmable.parse(productKey(42))).toBe(42);
    expect(productWarmable.parse(productKey(42, other(SHAPES.product)))).toBeNull();
  });

  it("an admin purge by key takes the key under every generation up to this release's", async () => {
    // As in the release that bumped the product's shape to 3 (the Worker runs in this isolate
    // and reads SHAPES when the purge comes): with every generation at 1 the purge names one key
    // either way, and the test could not fail.
    const shapes = SHAPES as { -readonly [K in keyof typeof SHAPES]: number };
    const today = shapes.product;
    shapes.product = 3;
    try {
      const user = await newUser();
      const key = `purge-shapes:${run}:${++seq}`;
      const every = keysOfEveryShape([key]);
      expect(every[0]).toBe(key);
      for (const k of every) await cache.set(k, { id: user.id }, { ttl: 60_000 });
      const purged = await api("POST", "/admin/invalidate", {
        prefix,
        admin: true,
        body: { keys: [key] },
      });
      expect(purged.status).toBe(200);
      for (const k of every) expect(await cache.get(k)).toBeNull();
    } finally {
      shapes.product = today;
    }
  });
});

/**
 * Why the README says to bump a shape generation, never to change CACHE_PREFIX for a new
 * shape: a release under another prefix applies its writes to its own prefix only (queue
 * messages carry no prefix), so the other release's entries outlive an acknowledged write
 * until their TTL. Pinned as it is.
 */
describe("a new CACHE_PREFIX for a new shape (what not to do)", () => {
  const oldRelease = apiFor(`${prefix}o`);
  const newRelease = apiFor(`${prefix}n`);

  it("a write through the previous release does not reach the new release's entries", async () => {
    const { product } = await newProduct(newRelease);
    await newRelease("GET", `/products/${product.id}`);
    expect((await newRelease("GET", `/products/${product.id}`)).headers.get("x-cache")).toBe("HIT");
    const write = await oldRelease<ProductDetail>("PATCH", `/products/${product.id}`, {
      body: { name: "After" },
    });
    expect(write.status).toBe(200);
    const read = await newRelease<ProductDetail>("GET", `/products/${product.id}`);
    expect(read.body.name).toBe("Before"); // older than the acknowledged write: the hazard
  });
});

/**
 * Queue messages and outbox rows cross releases: a message the previous release sent is
 * consumed by the new one, a message or row the new release wrote by the previous one (its
 * consumer, its dead-letter consumer and its cron run until it is gone). The event schema is
 * strict, and it has grown before (`outboxIds`, then `cursors`): an event with a field a release
 * does not know comes from a newer release. It must not be applied in part (the field may be
 * a kind of invalidation the old code cannot do), nor parked or dropped: it waits for the
 * release that wrote it. `prefix` stands for such a field here.
 */
describe("an event from a newer release (a field this release does not know)", () => {
  const eventsPrefix = `${prefix}e`;
  const engine = new EdgeCache({ redis: testRedis(), prefix: eventsPrefix });
  type Json = { [key: string]: JsonValue };
  const newer = (change: Json): Json => ({
    origin: "newer release",
    at: Date.now(),
    prefix: eventsPrefix,
    ...change,
  });
  const DLQ = "edgecache-purge-dlq";
  const insertRow = (event: Json, ageSeconds = 60) =>
    withDb(async (db) => {
      const [row] = await db
        .insert(cacheOutbox)
        .values({
          event,
          prefix: eventsPrefix,
          createdAt: sql`now() - make_interval(secs => ${ageSeconds})`,
          queuedAt: sql`now()`,
        })
        .returning({ id: cacheOutbox.id });
      if (!row) throw new Error("no row");
      return row.id;
    });
  const rowsOf = (ids: number[]) =>
    withDb((db) => db.select().from(cacheOutbox).where(inArray(cacheOutbox.id, ids)));
  const rowsFor = (messageId: string) =>
    withDb((db) =>
      db
        .select()
        .from(cacheOutbox)
        .where(
          sql`${cacheOutbox.prefix} = ${eventsPrefix} and ${cacheOutbox.deadLetterId} = ${messageId}`,
        ),
    );
  const drain = () =>
    withServices(eventsPrefix, {}, (services) => drainOutbox(services, { olderThanMs: 0 }));

  it("(the other way) a continuation in the format before `cursors` (one `cursor`) is resumed by this release's consumer", async () => {
    for (let i = 0; i < 20; i++) await engine.set(`evlegacy:${i}`, i);
    const batch = purgeBatch([
      {
        id: `l${run}`,
        body: { patterns: ["evlegacy:*"], cursor: "0", origin: "previous release", at: 1 },
      },
    ]);
    // Steps enough to finish the purge in one batch however many keys the shared Redis holds.
    const report = await withServices(eventsPrefix, {}, (services) =>
      processPurgeBatch(services, "edgecache-purge", batch.messages, {
        patterns: { steps: 1000, stepBudget: 1000 },
        subrequests: 2000,
      }),
    );
    expect([report.invalid, report.acked]).toEqual([0, 1]);
    expect(await engine.get("evlegacy:7")).toBeNull();
  });

  it("is retried by the purge consumer, not acked (it is not applied in part)", async () => {
    await engine.set("ev:retried", "stale");
    const result = await consumeBatch(
      [{ id: `r${run}`, body: newer({ keys: ["ev:retried"] }) }],
      testEnv(eventsPrefix),
    );
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual([`r${run}`]);
  });

  it("dead-lettered with its outbox rows: the dead-letter consumer gives the rows back to the drains", async () => {
    const id = await insertRow(newer({ keys: ["ev:row"] }));
    const result = await consumeBatch(
      [{ id: `d${run}`, body: newer({ keys: ["ev:row"], outboxIds: [id] }) }],
      testEnv(eventsPrefix),
      DLQ,
    );
    expect(result.explicitAcks).toEqual([`d${run}`]);
    const [row] = await rowsOf([id]);
    expect(row?.queuedAt).toBeNull();
    // Nothing parked in its place for a person to find.
    expect(await rowsFor(`d${run}`)).toEqual([]);
  });

  it("dead-lettered without rows (an admin purge queued while Postgres was down): recorded as a pending row as it was sent, not parked", async () => {
    const body = newer({ keys: ["ev:alone"] });
    const result = await consumeBatch([{ id: `a${run}`, body }], testEnv(eventsPrefix), DLQ);
    expect(result.explicitAcks).toEqual([`a${run}`]);
    const [row] = await rowsFor(`a${run}`);
    // Parked as "not an invalidation event", wrapped, it could only be discarded: lost.
    expect(row?.attempts).toBe(0);
    expect(row?.event).toEqual(body);
  });

  it("a row of it is left to the release that wrote it by this release's drains: no attempt charged, never parked for it", async () => {
    await engine.set("ev:drained", "stale");
    const id = await insertRow(newer({ keys: ["ev:drained"] }));
    for (let tick = 0; tick < 12; tick++) {
      const report = await drain();
      expect(report.invalid, `tick ${tick}`).toBe(0);
    }
    const [row] = await rowsOf([id]);
    expect(row?.attempts).toBe(0);
    expect(row?.processedAt).toBeNull();
    // Not applied in part either: the release that knows the field applies it.
    expect((await engine.get("ev:drained"))?.value).toBe("stale");
  });

  it("a row of it a day old is charged like any malformed row (a rollback left it): parked for a person", async () => {
    const id = await insertRow(newer({ keys: ["ev:old"] }), 2 * 86_400);
    const report = await drain();
    expect(report.invalid).toBeGreaterThanOrEqual(1);
    const [row] = await rowsOf([id]);
    expect(row?.attempts).toBe(1);
    expect(row?.lastError).toMatch(/newer release/);
  });
});
