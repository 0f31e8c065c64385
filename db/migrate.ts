/**
 * Node-only migration runner (pg + drizzle's node-postgres migrator). The
 * Worker never migrates: schema changes are applied ahead of deploys.
 *
 *   npx tsx db/migrate.ts          # creates the database if needed, migrates
 *   DATABASE_URL=postgres://... npx tsx db/migrate.ts
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readMigrationFiles } from "drizzle-orm/migrator";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import { Client, escapeIdentifier } from "pg";
import { parseDevVars } from "../tools/lib/dev-vars";

export const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/edgecache";

/**
 * The database the db: scripts work on, and where that came from: DATABASE_URL from the shell,
 * else the one in .dev.vars (the database `npm run dev` uses), else the default. They read only
 * the shell before, so `npm run db:seed -- --force` seeded another database than the running
 * stack's whenever .dev.vars named its own.
 */
export function scriptDatabaseUrl(
  env: NodeJS.ProcessEnv = process.env,
  devVarsPath = fileURLToPath(new URL("../.dev.vars", import.meta.url)),
): { url: string; from: string } {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, from: "DATABASE_URL" };
  if (existsSync(devVarsPath)) {
    const fromFile = parseDevVars(readFileSync(devVarsPath, "utf8")).DATABASE_URL;
    if (fromFile) return { url: fromFile, from: ".dev.vars" };
  }
  return { url: DEFAULT_DATABASE_URL, from: "the default; set DATABASE_URL for another" };
}

// Resolved from this file so `tsx db/migrate.ts`, tests and scripts launched
// from any cwd all find the same migrations.
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));

// drizzle's defaults, spelled out because we read the table for reporting.
const MIGRATIONS_SCHEMA = "drizzle";
const MIGRATIONS_TABLE = "__drizzle_migrations";

// Arbitrary constant shared by every migrator: concurrent deploys/test
// workers serialise on it instead of racing to apply the same migration.
const MIGRATION_LOCK_KEY = 727_001;

export interface PgTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

/** Parses the parts of a postgres:// URL that error messages need. */
export function describeTarget(databaseUrl: string): PgTarget {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    throw new Error(
      `DATABASE_URL is not a valid URL (${redact(databaseUrl)}): expected e.g. ${DEFAULT_DATABASE_URL}`,
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new Error(
      `DATABASE_URL must start with postgres:// or postgresql:// (got ${url.protocol}//...)`,
    );
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  return {
    host: url.hostname || "localhost",
    port: url.port ? Number(url.port) : 5432,
    user: decodeURIComponent(url.username) || "postgres",
    database,
  };
}

/** Hides the password so URLs can be logged. */
export function redact(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return "<unparseable url>";
  }
}

function errorCode(err: unknown, depth = 0): string | undefined {
  if (depth > 5 || typeof err !== "object" || err === null) return undefined;
  if ("code" in err) {
    const { code } = err as { code: unknown };
    if (typeof code === "string") return code;
  }
  // Node reports "localhost" (::1 and 127.0.0.1 both refused) as an
  // AggregateError whose own code may be missing.
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const code = errorCode(inner, depth + 1);
      if (code) return code;
    }
  }
  // drizzle wraps driver errors (DrizzleQueryError) with the pg error as cause.
  if (err instanceof Error && err.cause !== undefined) return errorCode(err.cause, depth + 1);
  return undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map(errorMessage).join("; ");
  }
  if (err instanceof Error) {
    // DrizzleQueryError's own message is just the SQL; the reason is the cause.
    return err.cause instanceof Error
      ? `${err.message.split("\n")[0]}: ${errorMessage(err.cause)}`
      : err.message;
  }
  return String(err);
}

/**
 * Turns driver errors into messages that say what to do next. Unknown errors
 * keep their original text; the original is always attached as `cause`.
 */
export function explainPgError(err: unknown, target: PgTarget, doing: string): Error {
  const where = `Postgres at ${target.host}:${target.port}`;
  const code = errorCode(err);
  let hint: string;
  switch (code) {
    case "ECONNREFUSED":
      hint = `${where} refused the connection: start Postgres (Debian: \`pg_ctlcluster <version> main start\`; macOS: \`brew services start postgresql\`) or set DATABASE_URL`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      hint = `cannot resolve host "${target.host}": fix the host in DATABASE_URL`;
      break;
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      hint = `${where} is unreachable (${code}): check the host/port in DATABASE_URL and any firewall`;
      break;
    case "3D000":
      hint = `database "${target.database}" does not exist on ${where}: run \`npm run db:migrate\` (it creates the database) or fix DATABASE_URL`;
      break;
    case "28P01":
    case "28000":
      hint = `${where} rejected user "${target.user}": put the right user/password in DATABASE_URL (local dev expects trust auth for "postgres")`;
      break;
    case "42501":
      hint = `user "${target.user}" lacks the privilege for this on ${where}: connect as a superuser or grant CREATEDB`;
      break;
    case "42P01":
      hint = `tables are missing in "${target.database}": run \`npm run db:migrate\` first`;
      break;
    case "57P03":
      hint = `${where} is starting up or shutting down: retry in a moment`;
      break;
    default:
      hint = errorMessage(err);
  }
  return new Error(`${doing} failed: ${hint}`, { cause: err });
}

async function connect(databaseUrl: string, doing: string): Promise<Client> {
  const target = describeTarget(databaseUrl);
  const client = new Client({
    connectionString: databaseUrl,
    // Fail fast instead of hanging a CLI/test when the server is wedged.
    connectionTimeoutMillis: 10_000,
    application_name: "edgecache-migrate",
  });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw explainPgError(err, target, doing);
  }
  return client;
}

/**
 * Creates the database named in `databaseUrl` when it does not exist yet.
 * Returns true when this call created it.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const target = describeTarget(databaseUrl);
  if (!target.database) {
    throw new Error(
      `DATABASE_URL has no database name (${redact(databaseUrl)}): append one, e.g. /edgecache`,
    );
  }
  const doing = `creating database "${target.database}"`;

  // CREATE DATABASE cannot run inside the target itself, so go through the
  // maintenance DB; template1 exists on every cluster if postgres was dropped.
  let admin: Client | undefined;
  let firstError: unknown;
  for (const maintenance of ["postgres", "template1"]) {
    const url = new URL(databaseUrl);
    url.pathname = `/${maintenance}`;
    try {
      admin = await connect(url.toString(), doing);
      break;
    } catch (err) {
      firstError ??= err;
      if (errorCode((err as Error).cause) !== "3D000") throw err;
    }
  }
  if (!admin) throw firstError;

  try {
    const existing = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [
      target.database,
    ]);
    if (existing.rowCount && existing.rowCount > 0) return false;
    try {
      // Identifiers cannot be bound as parameters; escapeIdentifier quotes and
      // doubles embedded quotes, so odd names can't break out of the statement.
      await admin.query(`CREATE DATABASE ${escapeIdentifier(target.database)}`);
      return true;
    } catch (err) {
      // Another process won the race between our check and CREATE: 42P04
      // normally, 23505 when both inserts hit pg_database at the same time.
      const code = errorCode(err);
      if (code === "42P04" || code === "23505") return false;
      throw explainPgError(err, target, doing);
    }
  } finally {
    await admin.end().catch(() => undefined);
  }
}

export interface MigrateOptions {
  log?: (line: string) => void;
}

export interface MigrateReport {
  /** Migrations applied by this call. */
  applied: number;
  /** Migrations recorded in the database after this call. */
  total: number;
  /** Migration files shipped in db/migrations. */
  available: number;
}

async function appliedMigrationCount(
  client: Client,
): Promise<{ count: number; lastMillis: number }> {
  const exists = await client.query<{ exists: boolean }>(
    "SELECT to_regclass($1) IS NOT NULL AS exists",
    [`${escapeIdentifier(MIGRATIONS_SCHEMA)}.${escapeIdentifier(MIGRATIONS_TABLE)}`],
  );
  if (!exists.rows[0]?.exists) return { count: 0, lastMillis: 0 };
  const res = await client.query<{ count: string; last: string | null }>(
    `SELECT count(*)::text AS count, max(created_at)::text AS last
       FROM ${escapeIdentifier(MIGRATIONS_SCHEMA)}.${escapeIdentifier(MIGRATIONS_TABLE)}`,
  );
  const row = res.rows[0];
  return { count: Number(row?.count ?? 0), lastMillis: Number(row?.last ?? 0) };
}

/** Same as {@link migrateDatabase} but reports what happened. */
export async function migrateDatabaseWithReport(
  databaseUrl: string,
  opts: MigrateOptions = {},
): Promise<MigrateReport> {
  const target = describeTarget(databaseUrl);
  const log = opts.log ?? (() => undefined);
  const doing = `migrating database "${target.database}"`;
  const files = readMigrationFiles({ migrationsFolder: MIGRATIONS_FOLDER });

  const client = await connect(databaseUrl, doing);
  try {
    // Session-level lock on this connection; released explicitly below and
    // implicitly if the process dies (the connection closes).
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      const before = await appliedMigrationCount(client);
      // drizzle applies every file newer than the last recorded one.
      const pending = files.filter((f) => f.folderMillis > before.lastMillis).length;
      log(
        pending === 0
          ? `migrations: ${target.database} is up to date (${before.count} applied)`
          : `migrations: applying ${pending} of ${files.length} to ${target.database}`,
      );
      await migrate(drizzle({ client }), {
        migrationsFolder: MIGRATIONS_FOLDER,
        migrationsSchema: MIGRATIONS_SCHEMA,
        migrationsTable: MIGRATIONS_TABLE,
      });
      const after = await appliedMigrationCount(client);
      const applied = after.count - before.count;
      if (applied > 0) log(`migrations: applied ${applied}, ${after.count} recorded in total`);
      return { applied, total: after.count, available: files.length };
    } finally {
      await client
        .query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY])
        .catch(() => undefined);
    }
  } catch (err) {
    if (err instanceof Error && err.message.startsWith(doing)) throw err;
    throw explainPgError(err, target, doing);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Applies pending migrations from db/migrations. Safe to call repeatedly and concurrently. */
export async function migrateDatabase(
  databaseUrl: string,
  opts: MigrateOptions = {},
): Promise<void> {
  await migrateDatabaseWithReport(databaseUrl, opts);
}

/** True when `moduleUrl` is the script node/tsx was asked to run. */
export function isMainModule(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(fileURLToPath(moduleUrl)) === realpathSync(entry);
  } catch {
    return moduleUrl === pathToFileURL(entry).href;
  }
}

async function main(): Promise<void> {
  const { url: databaseUrl, from } = scriptDatabaseUrl();
  const { database } = describeTarget(databaseUrl);
  console.log(`target: ${redact(databaseUrl)} (from ${from})`);
  const created = await ensureDatabase(databaseUrl);
  console.log(created ? `created database "${database}"` : `database "${database}" already exists`);
  const report = await migrateDatabaseWithReport(databaseUrl, { log: (line) => console.log(line) });
  console.log(
    `done: ${report.applied} migration(s) applied now, ${report.total}/${report.available} recorded`,
  );
}

if (isMainModule(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
