import { desc, sql } from "drizzle-orm";
import { cacheOutbox, categories } from "../../db/schema";
import { createDb } from "../../src/db/neon";
import { stack } from "./stack";

export type TestDb = ReturnType<typeof createDb>["db"];

/** A short-lived drizzle handle on the test database (through the WebSocket proxy, as the Worker). */
export async function withDb<T>(fn: (db: TestDb) => Promise<T>): Promise<T> {
  const database = createDb({ databaseUrl: stack.databaseUrl, wsProxy: stack.wsProxy });
  try {
    return await fn(database.db);
  } finally {
    await database.close();
  }
}

/** Inserts a category behind the API's back: its id. */
export async function insertCategory(values: { slug: string; name: string }): Promise<number> {
  return withDb(async (db) => {
    const [row] = await db.insert(categories).values(values).returning({ id: categories.id });
    if (!row) throw new Error("no category");
    return row.id;
  });
}

/** The newest outbox row whose event names `key`, with its processed_at. */
export async function outboxRowFor(key: string) {
  return withDb(async (db) => {
    const [row] = await db
      .select()
      .from(cacheOutbox)
      .where(sql`${cacheOutbox.event}->'keys' @> ${JSON.stringify([key])}::jsonb`)
      .orderBy(desc(cacheOutbox.id))
      .limit(1);
    return row;
  });
}
