/**
 * Running parsed commands on a Redis connection: one command, or a pipeline or MULTI/EXEC
 * batch. A Redis error is the caller's (a 400, or that command's `{"error"}` in a batch);
 * any other failure means the link broke (the pool's 500).
 */
import type { Redis } from "ioredis";
import { errorText, HttpError } from "./http";
import type { ConnectionPool } from "./pool";
import type { Command } from "./request";

export function isReplyError(error: unknown): error is Error {
  return error instanceof Error && error.name === "ReplyError";
}

export async function runSingle(
  redis: Redis,
  command: Command,
  pool: ConnectionPool,
): Promise<unknown> {
  const [name, ...args] = command;
  try {
    return await redis.callBuffer(name, ...args);
  } catch (error) {
    if (isReplyError(error)) throw new HttpError(400, error.message);
    throw pool.unreachable(error);
  }
}

export async function runBatch(
  redis: Redis,
  commands: Command[],
  atomic: boolean,
  pool: ConnectionPool,
): Promise<[Error | null, unknown][]> {
  const only = commands.length === 1 ? commands[0] : undefined;
  if (only && !atomic) {
    // @upstash/redis auto-pipelines, so nearly every request is a /pipeline of one command: an
    // ioredis Pipeline for it costs more CPU than the command (Pipeline object, exec, promise
    // bookkeeping). The reply is the same [error, result] a pipeline would give.
    const [name, ...args] = only;
    try {
      return [[null, await redis.callBuffer(name, ...args)]];
    } catch (error) {
      if (isReplyError(error)) return [[error, null]];
      throw pool.unreachable(error);
    }
  }
  const batch = atomic ? redis.multi() : redis.pipeline();
  for (const [name, ...args] of commands) batch.callBuffer(name, ...args);
  let replies: [Error | null, unknown][] | null;
  try {
    replies = await batch.exec();
  } catch (error) {
    // EXECABORT: a command failed to queue, so nothing ran. Surface Redis's reasons.
    if (isReplyError(error)) throw new HttpError(400, execAbortText(error));
    throw pool.unreachable(error);
  }
  if (!replies) throw new HttpError(400, "Transaction aborted by Redis");
  const broken = replies.find(([error]) => error && !isReplyError(error));
  if (broken) throw pool.unreachable(broken[0]);
  return replies;
}

function execAbortText(error: Error): string {
  const previous: unknown = Reflect.get(error, "previousErrors");
  if (!Array.isArray(previous) || previous.length === 0) return error.message;
  const reasons = previous.map((e: unknown) => errorText(e)).join("; ");
  return `${error.message} ${reasons}`;
}
