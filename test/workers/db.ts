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
