import type { Redis } from "../redis/client";

export type JobName = "warm" | "purge" | "dead-letter";

const HEARTBEAT_TTL_MS = 7 * 24 * 3600 * 1000;

const heartbeatKey = (prefix: string, job: JobName) => `${prefix}:job:${job}`;

/** Records when a job last ran and what it did; /admin/stats and tests read it back. */
export async function recordHeartbeat(
  redis: Redis,
  prefix: string,
  job: JobName,
  detail: Record<string, unknown>,
): Promise<void> {
  await redis.set(
    heartbeatKey(prefix, job),
    { at: Date.now(), ...detail },
    { px: HEARTBEAT_TTL_MS },
  );
}

export async function readHeartbeat(
  redis: Redis,
  prefix: string,
  job: JobName,
): Promise<Record<string, unknown> | null> {
  return redis.get<Record<string, unknown>>(heartbeatKey(prefix, job));
}

type Beat = Record<string, unknown> | null;

/** Every job's last heartbeat in one request. */
export async function readHeartbeats(
  redis: Redis,
  prefix: string,
): Promise<{ warm: Beat; purge: Beat; deadLetter: Beat }> {
  const [warm, purge, deadLetter] = await redis.mget<[Beat, Beat, Beat]>(
    heartbeatKey(prefix, "warm"),
    heartbeatKey(prefix, "purge"),
    heartbeatKey(prefix, "dead-letter"),
  );
  return { warm: warm ?? null, purge: purge ?? null, deadLetter: deadLetter ?? null };
}
