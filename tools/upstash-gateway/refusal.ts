/**
 * Which commands the gateway refuses in a JSON body, and why: every request shares one Redis
 * connection per DB, so a command that blocks it or changes its state is turned away with a
 * 400 naming the reason (and the route to use instead, where there is one). FLUSHALL is
 * narrowed to the token's database.
 */
import type { Command } from "./request";

const STREAM_ONLY =
  "subscribe through the streaming route POST /subscribe/<channel> (Server-Sent Events)";
const PSTREAM_ONLY =
  "subscribe through the streaming route POST /psubscribe/<pattern> (Server-Sent Events)";

/**
 * Every request shares one connection per DB, so anything that blocks it or changes its
 * state would leak into other callers. Upstash refuses most of these too.
 */
const REFUSED: Record<string, string> = {
  SUBSCRIBE: STREAM_ONLY,
  PSUBSCRIBE: PSTREAM_ONLY,
  SSUBSCRIBE: "sharded pub/sub is not served (Upstash neither)",
  UNSUBSCRIBE: "to unsubscribe, close the subscribe stream",
  PUNSUBSCRIBE: "to unsubscribe, close the psubscribe stream",
  SUNSUBSCRIBE: "sharded pub/sub is not served (Upstash neither)",
  MONITOR: "MONITOR would take over the shared connection",
  BLPOP: "blocking commands would stall the shared connection",
  BRPOP: "blocking commands would stall the shared connection",
  BRPOPLPUSH: "blocking commands would stall the shared connection",
  BLMOVE: "blocking commands would stall the shared connection",
  BLMPOP: "blocking commands would stall the shared connection",
  BZPOPMIN: "blocking commands would stall the shared connection",
  BZPOPMAX: "blocking commands would stall the shared connection",
  BZMPOP: "blocking commands would stall the shared connection",
  WAIT: "blocking commands would stall the shared connection",
  WAITAOF: "blocking commands would stall the shared connection",
  SELECT: "the database is chosen by the bearer token",
  SWAPDB: "the database is chosen by the bearer token",
  MOVE: "the database is chosen by the bearer token",
  MULTI: "use POST /multi-exec for transactions",
  EXEC: "use POST /multi-exec for transactions",
  DISCARD: "use POST /multi-exec for transactions",
  WATCH: "WATCH state would leak between callers of the shared connection",
  UNWATCH: "WATCH state would leak between callers of the shared connection",
  QUIT: "connection-state commands are not allowed",
  RESET: "connection-state commands are not allowed",
  HELLO: "connection-state commands are not allowed",
  AUTH: "connection-state commands are not allowed",
};

const REFUSED_CLIENT_SUBCOMMANDS = new Set(["REPLY", "TRACKING", "CACHING", "PAUSE"]);

export function refusalReason(command: Command): string | undefined {
  const [name, ...args] = command;
  const reason = REFUSED[name];
  if (reason) return reason;
  const first = args[0]?.toUpperCase();
  if (name === "CLIENT" && first && REFUSED_CLIENT_SUBCOMMANDS.has(first)) {
    return "connection-state commands are not allowed";
  }
  const isStreamRead = name === "XREAD" || name === "XREADGROUP";
  if (isStreamRead && args.some((a) => a.toUpperCase() === "BLOCK")) {
    return "blocking commands would stall the shared connection";
  }
  return undefined;
}

/**
 * An Upstash database is a single keyspace, so FLUSHALL there means "this database".
 * Here all tokens share one server; a literal FLUSHALL would wipe other tokens' DBs.
 */
export function scopeToDatabase(command: Command): Command {
  const [name, ...args] = command;
  return name === "FLUSHALL" ? ["FLUSHDB", ...args] : command;
}
