/**
 * Redis connections, one per DB index, created on first use and replaced when the link dies;
 * plus dedicated ones for subscribers. A Redis that cannot be reached fails the request
 * quickly with a 500 naming the (password-redacted) URL, instead of queueing it.
 */
import { Redis } from "ioredis";
import { errorText, HttpError } from "./http";

const CONNECT_TIMEOUT_MS = 2000;

class RedisUnreachable extends HttpError {
  constructor(url: string, reason: string) {
    super(500, `Redis at ${url} is unreachable: ${reason}; start redis-server or set REDIS_URL`);
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return url;
  }
}

export class ConnectionPool {
  private readonly connections = new Map<number, Promise<Redis>>();
  private readonly safeUrl: string;
  private closed = false;

  constructor(
    private readonly redisUrl: string,
    private readonly log: (line: string) => void,
  ) {
    this.safeUrl = redactUrl(redisUrl);
  }

  async get(db: number): Promise<Redis> {
    if (this.closed) throw new HttpError(503, "Gateway is shutting down");
    const current = this.connections.get(db);
    if (!current) return this.open(db);
    const redis = await current.catch(() => undefined);
    if (redis?.status === "ready") return redis;
    // The link died (retryStrategy is off, so it stays dead): replace it exactly once,
    // even when several requests notice at the same time.
    if (this.connections.get(db) === current) {
      redis?.disconnect();
      this.connections.delete(db);
    }
    return this.get(db);
  }

  /**
   * A connection of its own, outside the pool (a subscriber owns its link): named so
   * `CLIENT LIST` shows what it is. The caller closes it.
   */
  async dedicated(db: number, name: string): Promise<Redis> {
    if (this.closed) throw new HttpError(503, "Gateway is shutting down");
    return this.connect(db, name);
  }

  /** Any non-Redis failure while a command is in flight means the link itself broke. */
  unreachable(error: unknown): RedisUnreachable {
    return new RedisUnreachable(this.safeUrl, errorText(error));
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((p) => p.then((r) => r.quit()).catch(() => undefined)));
  }

  private open(db: number): Promise<Redis> {
    const pending = this.connect(db);
    this.connections.set(db, pending);
    pending.catch(() => {
      if (this.connections.get(db) === pending) this.connections.delete(db);
    });
    return pending;
  }

  private async connect(db: number, connectionName?: string): Promise<Redis> {
    let lastError = "";
    // Fail fast instead of queueing: a test waiting on a dead Redis should get a 500
    // in milliseconds, not hang. A dropped link is replaced on the next request.
    // SELECT on connect (`db`) is not enough: ioredis logs a refused SELECT and carries on in
    // DB 0, so a token meant for DB 16 read and wrote DB 0. The SELECT below fails instead.
    const redis = new Redis(this.redisUrl, {
      db,
      connectionName,
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    redis.on("error", (error: Error) => {
      lastError = error.message;
      this.log(`redis db=${db}: ${error.message}`);
    });
    try {
      await redis.connect();
    } catch (error) {
      redis.disconnect();
      throw new RedisUnreachable(this.safeUrl, lastError || errorText(error));
    }
    try {
      await redis.select(db);
      return redis;
    } catch (error) {
      redis.disconnect();
      throw new HttpError(
        500,
        `Redis at ${this.safeUrl} refuses DB ${db} (${errorText(error)}): give this token a DB index below the server's \`databases\` setting`,
      );
    }
  }
}
