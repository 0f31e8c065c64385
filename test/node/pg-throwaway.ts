/**
 * Throwaway databases for Node tests: random names under a fixed prefix, and a
 * drop helper that refuses anything outside that prefix so a test can never
 * remove the dev database ("edgecache") or the shared stack's one.
 */
import { randomBytes } from "node:crypto";
import { Client, escapeIdentifier } from "pg";

const PREFIX = "edgecache_test_db_";

// Same server as the shared test stack; only the database name differs.
const SERVER_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/edgecache_test";

export function throwawayDatabaseUrl(suffix = ""): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${PREFIX}${randomBytes(6).toString("hex")}${suffix}`;
  return url.toString();
}

export function databaseName(databaseUrl: string): string {
  return decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
}

export async function withAdmin<T>(fn: (admin: Client) => Promise<T>): Promise<T> {
  const url = new URL(SERVER_URL);
  url.pathname = "/postgres";
  const admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

export async function dropThrowawayDatabase(databaseUrl: string): Promise<void> {
  const name = databaseName(databaseUrl);
  if (!name.startsWith(PREFIX) || name === "edgecache") {
    throw new Error(`refusing to drop "${name}": not a throwaway test database`);
  }
  await withAdmin(async (admin) => {
    // Pools that leaked a connection (a failed test) would block DROP.
    await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [name],
    );
    await admin.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
  });
}

export async function databaseExists(databaseUrl: string): Promise<boolean> {
  return withAdmin(async (admin) => {
    const res = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [
      databaseName(databaseUrl),
    ]);
    return (res.rowCount ?? 0) > 0;
  });
}
