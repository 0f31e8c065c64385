import { execFile, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import net from "node:net";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
type Log = (line: string) => void;

const isLocalHost = (host: string) => ["127.0.0.1", "localhost", "::1", "[::1]"].includes(host);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function onPath(binary: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${binary}`], { stdio: "ignore" }).status === 0;
}

/** Sends a raw RESP PING: no client library, no retries, a firm deadline. */
export function pingRedis(redisUrl: string, timeoutMs = 1000): Promise<boolean> {
  const url = new URL(redisUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => {
      const password = url.password ? decodeURIComponent(url.password) : "";
      if (password) {
        const user = url.username ? decodeURIComponent(url.username) : "default";
        socket.write(
          `*3\r\n$4\r\nAUTH\r\n$${Buffer.byteLength(user)}\r\n${user}\r\n$${Buffer.byteLength(password)}\r\n${password}\r\n`,
        );
      }
      socket.write("*1\r\n$4\r\nPING\r\n");
    });
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString();
      if (received.includes("+PONG")) done(true);
      else if (received.includes("-")) done(false);
    });
  });
}

/**
 * Makes sure a Redis answers at redisUrl: starts redis-server when the URL is local and the
 * binary is installed, otherwise says exactly what to do.
 */
export async function ensureRedis(redisUrl: string, log: Log = () => {}): Promise<void> {
  if (await pingRedis(redisUrl)) return;
  const url = new URL(redisUrl);
  const port = url.port || "6379";
  if (!isLocalHost(url.hostname)) {
    throw new Error(
      `Redis at ${redisUrl} does not answer PING. Check REDIS_URL or start that server.`,
    );
  }
  if (!onPath("redis-server")) {
    throw new Error(
      `Redis is not running at ${redisUrl} and redis-server is not installed. Install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) or set REDIS_URL to a running server.`,
    );
  }
  log(
    `redis-server is not running on port ${port}; starting it (no persistence, in the background: it keeps running after this command ends; stop it with \`redis-cli -p ${port} shutdown nosave\`)`,
  );
  await run("redis-server", [
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    port,
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  for (let i = 0; i < 50; i++) {
    if (await pingRedis(redisUrl)) return;
    await sleep(100);
  }
  throw new Error(`Started redis-server on port ${port} but it does not answer PING after 5 s.`);
}

async function postgresAnswers(databaseUrl: string): Promise<string | null> {
  const url = new URL(databaseUrl);
  url.pathname = "/postgres";
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("select 1");
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Finds Debian-style clusters (pg_ctlcluster) so a stopped local server can be started. */
function debianClusters(): string[] {
  if (!existsSync("/etc/postgresql")) return [];
  return readdirSync("/etc/postgresql").filter((v) => existsSync(`/etc/postgresql/${v}/main`));
}

/**
 * Makes sure the Postgres server behind databaseUrl accepts connections. Starts a local
 * Debian cluster when one is installed; otherwise says what to install or set.
 */
export async function ensurePostgres(databaseUrl: string, log: Log = () => {}): Promise<void> {
  const first = await postgresAnswers(databaseUrl);
  if (first === null) return;
  const url = new URL(databaseUrl);
  if (!isLocalHost(url.hostname)) {
    throw new Error(`Postgres at ${url.host} is unreachable (${first}). Check DATABASE_URL.`);
  }
  const clusters = onPath("pg_ctlcluster") ? debianClusters() : [];
  if (clusters.length === 0) {
    throw new Error(
      `Postgres at ${url.host} is unreachable (${first}) and no local cluster was found to start. Install PostgreSQL (Debian/Ubuntu: apt-get install -y postgresql) or set DATABASE_URL to a running server.`,
    );
  }
  for (const version of clusters) {
    log(`Postgres is not answering (${first}); starting cluster ${version}/main`);
    await run("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "start"]).catch(
      (err: unknown) => log(`pg_ctlcluster ${version} main start: ${String(err)}`),
    );
  }
  for (let i = 0; i < 60; i++) {
    if ((await postgresAnswers(databaseUrl)) === null) return;
    await sleep(250);
  }
  throw new Error(
    `Started the local Postgres cluster but ${url.host} still refuses connections: ${(await postgresAnswers(databaseUrl)) ?? "?"}. Check its log in /var/log/postgresql.`,
  );
}

/**
 * A Redis DB index from the environment (`name`, e.g. TEST_REDIS_DB): a whole number, or an
 * error saying what to set. ioredis given NaN or an index the server does not have logs an error
 * and goes on with DB 0: the test setup then flushed DB 0, and `npm run dev` crashed on its
 * first request with the Worker left holding the port.
 *
 * @example
 * redisDbIndex(process.env.REDIS_DB, "REDIS_DB", 0); // 0 when unset
 */
export function redisDbIndex(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined || raw.trim() === "") return fallback;
  if (!/^\d{1,5}$/.test(raw.trim())) {
    throw new Error(
      `${name}=${JSON.stringify(raw)} is not a Redis DB index: set a whole number from 0 to 15 (the server's \`databases\` setting), e.g. ${name}=1.`,
    );
  }
  return Number(raw.trim());
}

/**
 * Throws, saying what to set, when the Redis at `redisUrl` has no DB `db` (SELECT refuses it),
 * before anything writes to or flushes what would otherwise be DB 0.
 */
export async function checkRedisDb(redisUrl: string, db: number, name: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await redis.select(db);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(
      `${name}=${db}: the Redis at ${redisUrl} refuses DB ${db} (${why}); choose an index below its \`databases\` setting (\`redis-cli config get databases\`).`,
    );
  } finally {
    redis.disconnect();
  }
}
