import { beforeAll, describe, expect, it } from "vitest";
import { users } from "../../db/schema";
import { type CategoryDetail, categoryEntryOptions } from "../../src/domain/categories";
import type { ProductDetail } from "../../src/domain/products";
import { type UserJson, userEntry } from "../../src/domain/users";
import { api, apiFor, postProduct } from "./api";
import { insertCategory, withDb } from "./db";
import { clearPrefix, workerCache } from "./stack";

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
 * Known, not fixed here (a design decision: see the deploy notes in README "Deploy"). Each
 * `it.fails` passes while the problem is there; it starts failing once it is solved.
 */
describe("known: what a deploy that changes a cached shape does today", () => {
  const oldPrefix = `${prefix}o`;
  const newPrefix = `${prefix}n`;
  const oldRelease = apiFor(oldPrefix);
  const newRelease = apiFor(newPrefix);

  it.fails("with a new CACHE_PREFIX (to cold-start the new shape), a write through the previous release reaches the new release's entries", async () => {
    const category = await insertCategory({ slug: `ds-${run}-${++seq}`, name: "Prefixes" });
    const product = await postProduct(newRelease, {
      sku: `DS-${run}-${++seq}`,
      name: "Before",
      categoryId: category,
      priceCents: 100,
    });
    await newRelease("GET", `/products/${product.id}`);
    expect((await newRelease("GET", `/products/${product.id}`)).headers.get("x-cache")).toBe("HIT");
    // A client's write lands on the previous release: acknowledged, applied to ITS prefix.
    const write = await oldRelease<ProductDetail>("PATCH", `/products/${product.id}`, {
      body: { name: "After" },
    });
    expect(write.status).toBe(200);
    // Any read that starts after the acknowledgment must see it, whichever release serves it.
    const read = await newRelease<ProductDetail>("GET", `/products/${product.id}`);
    expect(read.body.name).toBe("After");
  });

  it.fails("with the same prefix, the new release never serves the shape the previous release cached", async () => {
    const user = await newUser();
    const { tier: _dropped, ...previous } = user;
    // The previous release's fill, write-through or warmer (equal versions rewrite).
    await cache.writeThrough(
      `user:${user.id}`,
      asPrevious<UserJson>(previous),
      user.version,
      userEntry(user.id),
    );
    const read = await api<UserJson>("GET", `/users/${user.id}`, { prefix });
    expect(read.body).toEqual(user);
  });
});
