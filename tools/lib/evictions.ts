import { Redis as IORedis } from "ioredis";

/** Which part of the engine's key layout (src/cache/README.md) an evicted key belonged to. */
export type KeyKind = "entry" | "lease" | "version" | "tag" | "hot" | "stats" | "other";

export function kindOf(key: string, prefix: string): KeyKind {
  if (!key.startsWith(`${prefix}:`)) return "other";
  const rest = key.slice(prefix.length + 1);
  if (rest === "stats") return "stats";
  const kinds: Record<string, KeyKind> = { e: "entry", l: "lease", v: "version", t: "tag" };
  const head = rest.slice(0, rest.indexOf(":"));
  if (head === "hot") return "hot";
  return kinds[head] ?? "other";
}

/** A zero count for every kind of key. */
export const emptyKinds = (): Record<KeyKind, number> => ({
  entry: 0,
  lease: 0,
  version: 0,
  tag: 0,
  hot: 0,
  stats: 0,
  other: 0,
});

/**
 * Counts evictions exactly: subscribes to `__keyevent@<db>__:evicted` keyspace notifications
 * (the server must run with `notify-keyspace-events Ee`, set here on a private server).
 *
 * @example
 * const watch = await EvictionWatch.start(url);
 * // … workload …
 * await watch.settle(); console.log(watch.byKind("ec"));
 */
export class EvictionWatch {
  readonly keys: string[] = [];
  #listeners = new Set<(key: string) => void>();

  private constructor(private readonly sub: IORedis) {}

  static async start(url: string, db = 0): Promise<EvictionWatch> {
    const admin = new IORedis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();
    await admin.config("SET", "notify-keyspace-events", "Ee");
    admin.disconnect();
    const sub = new IORedis(url, { maxRetriesPerRequest: 1 });
    const watch = new EvictionWatch(sub);
    await sub.subscribe(`__keyevent@${db}__:evicted`);
    sub.on("message", (_channel: string, key: string) => {
      watch.keys.push(key);
      for (const listener of watch.#listeners) listener(key);
    });
    return watch;
  }

  /** Resolves when `key` is evicted (or at once if it already was). */
  evicted(key: string): Promise<void> {
    if (this.keys.includes(key)) return Promise.resolve();
    return new Promise((resolve) => {
      const listener = (k: string) => {
        if (k !== key) return;
        this.#listeners.delete(listener);
        resolve();
      };
      this.#listeners.add(listener);
    });
  }

  /** Notifications are asynchronous: a PING round trip on the subscriber drains those in flight. */
  async settle(): Promise<void> {
    await this.sub.ping();
  }

  reset(): void {
    this.keys.length = 0;
  }

  byKind(prefix: string): Record<KeyKind, number> {
    const counts = emptyKinds();
    for (const key of this.keys) counts[kindOf(key, prefix)]++;
    return counts;
  }

  close(): void {
    this.sub.disconnect();
  }
}
