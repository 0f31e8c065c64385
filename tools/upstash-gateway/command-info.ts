/**
 * Which commands only read: asked once from Redis itself (`COMMAND`), so the gateway agrees
 * with the server on every command, subcommands included (`OBJECT|ENCODING`).
 *
 * Upstash serves read-only commands and `EVAL_RO`/`EVALSHA_RO` from the nearest read replica
 * of a Global database and sends everything else to the primary
 * (https://upstash.com/docs/redis/commands/scripting/eval-ro); the gateway routes and counts
 * the same way.
 *
 * @example
 * const info = await CommandInfo.load(redis);
 * info.kind(["GET", "k"]); // "read"
 * info.kind(["EVALSHA", sha, "0"]); // "write" (a script may write unless called *_RO)
 */
import type { Redis } from "ioredis";

/** read = served by a replica; write = changes data (or may: plain scripts); other = neither. */
export type CallKind = "read" | "write" | "other";

type Command = [name: string, ...args: string[]];

/** Scripts and functions carry no `write` flag (their body decides), yet may write. */
const MAY_WRITE = new Set(["EVAL", "EVALSHA", "FCALL"]);

interface Flags {
  readonly: boolean;
  write: boolean;
}

export class CommandInfo {
  private constructor(
    private readonly flags: Map<string, Flags>,
    private readonly containers: Set<string>,
  ) {}

  static async load(redis: Redis): Promise<CommandInfo> {
    const table = (await redis.call("COMMAND")) as unknown[];
    const flags = new Map<string, Flags>();
    const containers = new Set<string>();
    const add = (entry: unknown) => {
      if (!Array.isArray(entry)) return;
      const name = String(entry[0]).toUpperCase();
      const list = Array.isArray(entry[2]) ? entry[2].map(String) : [];
      flags.set(name, { readonly: list.includes("readonly"), write: list.includes("write") });
      const subs = entry[9];
      if (Array.isArray(subs) && subs.length > 0) {
        containers.add(name);
        for (const sub of subs) add(sub);
      }
    };
    for (const entry of table) add(entry);
    return new CommandInfo(flags, containers);
  }

  kind(command: Command): CallKind {
    const [name, first] = command;
    if (MAY_WRITE.has(name)) return "write";
    const key = this.containers.has(name) && first ? `${name}|${first.toUpperCase()}` : name;
    const found = this.flags.get(key) ?? this.flags.get(name);
    if (!found) return "other";
    if (found.write) return "write";
    return found.readonly ? "read" : "other";
  }
}
