import type { Redis } from "../redis/client";

export type JobName = "warm" | "purge";

const HEARTBEAT_TTL_MS = 7 * 24 * 3600 * 1000;

/** Records when a job last ran and what it did; /admin/stats and tests read it back. */
export async function recordHeartbeat(
  redis: Redis,
  prefix: string,
  job: JobName,
  detail: Record<string, unknown>,
): Promise<void> {
  await redis.set(`${prefix}:job:${job}`, { at: Date.now(), ...detail }, { px: HEARTBEAT_TTL_MS });
}

export async function readHeartbeat(
  redis: Redis,
  prefix: string,
  job: JobName,
): Promise<Record<string, unknown> | null> {
  return redis.get<Record<string, unknown>>(`${prefix}:job:${job}`);
}
