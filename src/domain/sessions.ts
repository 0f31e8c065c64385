import { z } from "zod";
import { redisCall } from "../redis/errors";
import type { Services } from "../runtime/services";
import { getUser } from "./users";

/**
 * Sessions: data that only ever lives in Redis, with Redis' own TTL as the expiry. There is no
 * row behind a session, so nothing to keep consistent with Postgres; each operation is one
 * request (SET … EX NX, one Lua script for read + sliding renewal, DEL). With no copy anywhere
 * else, a failed Redis call is a RedisUnavailableError (503), not a fallback. Creating one checks
 * that its user exists, through the user cache (one read-only hit when the user is cached).
 */

export const SESSION_TTL_SECONDS = { min: 60, max: 86_400, default: 3_600 } as const;
/** Bound on the serialised `data`, so a session cannot be used as general-purpose storage. */
export const MAX_SESSION_DATA_BYTES = 4_096;
/** 32 random bytes, hex: the only shape that reaches a Redis key. */
export const SESSION_TOKEN = /^[0-9a-f]{64}$/;

export type SessionData = Record<string, unknown>;

export interface NewSession {
  userId: number;
  data?: SessionData;
  ttlSeconds?: number;
  sliding?: boolean;
}

/**
 * Session data: any JSON object, kept as it is. Not `z.record`, which copies the object key by
 * key: assigning a `"__proto__"` key sets the copy's prototype instead, so that key was dropped
 * without a word. The object JSON.parse built holds it as an own key, and JSON.stringify writes
 * it back.
 */
export const isSessionData = (v: unknown): v is SessionData =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const storedSchema = z.object({
  userId: z.number(),
  data: z.custom<SessionData>(isSessionData),
  createdAt: z.string(),
  ttlSeconds: z.number(),
  sliding: z.boolean(),
});
type StoredSession = z.infer<typeof storedSchema>;

export interface SessionView {
  userId: number;
  data: SessionData;
  createdAt: string;
  sliding: boolean;
  /** Seconds left before the session expires (after renewal, for a sliding session). */
  ttlSeconds: number;
}

export function sessionDataBytes(data: SessionData): number {
  return new TextEncoder().encode(JSON.stringify(data)).byteLength;
}

/**
 * Where `value` holds a number JSON cannot carry (Infinity, -Infinity, NaN): its path, or null
 * when there is none. JSON.parse turns an out-of-range literal (`1e400`) into Infinity, and
 * JSON.stringify writes that as `null`: stored, the session would silently hold another value.
 * Walked with an explicit stack, so nesting of any depth cannot overflow the call stack; the
 * path is rebuilt only for the number found.
 *
 * @example
 *   nonFiniteNumberPath(JSON.parse('{"a":[1,{"b":1e400}]}')); // ["a", 1, "b"]
 *   nonFiniteNumberPath({ a: [1, 2] }); // null
 */
export function nonFiniteNumberPath(value: unknown): (string | number)[] | null {
  interface Step {
    value: unknown;
    key: string | number | undefined;
    parent: Step | undefined;
  }
  const stack: Step[] = [{ value, key: undefined, parent: undefined }];
  for (let step = stack.pop(); step !== undefined; step = stack.pop()) {
    const v = step.value;
    if (typeof v === "number" && !Number.isFinite(v)) {
      const path: (string | number)[] = [];
      for (let s: Step | undefined = step; s?.key !== undefined; s = s.parent) path.push(s.key);
      return path.reverse();
    }
    if (typeof v !== "object" || v === null) continue;
    const entries: [string | number, unknown][] = Array.isArray(v)
      ? v.map((item, i) => [i, item])
      : Object.entries(v);
    for (const [key, item] of entries) stack.push({ value: item, key, parent: step });
  }
  return null;
}

function sessionKey(services: Services, token: string): string {
  // Routes validate too; this keeps a caller that forgot from writing outside the namespace.
  if (!SESSION_TOKEN.test(token)) throw new RangeError("malformed session token");
  return `${services.config.CACHE_PREFIX}:s:${token}`;
}

function newToken(): string {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A new session for an existing user; null when there is no such user. The user is read through
 * its cache entry: one read-only hit when cached, and a negative entry (NOT_FOUND_TTL_MS) keeps
 * repeated attempts with an unknown id off Postgres.
 */
export async function createSession(
  services: Services,
  input: NewSession,
): Promise<{ token: string; expiresInSeconds: number } | null> {
  const ttlSeconds = input.ttlSeconds ?? SESSION_TTL_SECONDS.default;
  const data = input.data ?? {};
  if (sessionDataBytes(data) > MAX_SESSION_DATA_BYTES) {
    throw new RangeError(`session data over ${MAX_SESSION_DATA_BYTES} bytes`);
  }
  const nonFinite = nonFiniteNumberPath(data);
  if (nonFinite) throw new RangeError(`session data: no finite number at ${nonFinite.join(".")}`);
  if ((await getUser(services, input.userId)).value === null) return null;
  const token = newToken();
  // ttlSeconds and sliding first: READ_SCRIPT reads them from the front of the stored JSON.
  const stored: StoredSession = {
    ttlSeconds,
    sliding: input.sliding ?? false,
    userId: input.userId,
    createdAt: new Date().toISOString(),
    data,
  };
  // NX: a token is 256 random bits, so a clash is not expected, but it must never overwrite.
  const key = sessionKey(services, token);
  const set = await redisCall("session create", () =>
    services.redis.set(key, JSON.stringify(stored), { ex: ttlSeconds, nx: true }),
  );
  if (set !== "OK") throw new Error("session token collision");
  return { token, expiresInSeconds: ttlSeconds };
}

/**
 * GET + (EXPIRE when the session is sliding) + TTL in one round trip. The renewal decision is
 * made from the stored value inside Redis, so the client cannot extend a fixed session. It reads
 * `ttlSeconds` and `sliding` from the front of the stored JSON, where createSession puts them,
 * without decoding `data`: cjson refuses what JSON.stringify writes for data nested over 1,000
 * deep or holding a lone surrogate, and a sliding session with such data silently stopped
 * renewing. Sessions stored by earlier releases (other field order) are decoded whole, as before.
 * The value comes back as a string inside the JSON reply: re-encoding it with cjson would turn
 * empty arrays in `data` into objects. It touches only KEYS[1], so on Upstash it locks only that
 * key (`allow-key-locking`), not the whole database as an unflagged script does.
 */
const READ_SCRIPT = `#!lua flags=allow-key-locking
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ttl, sliding = string.match(raw, '^{"ttlSeconds":(%d+),"sliding":(%a+),')
if not ttl then
  local ok, session = pcall(cjson.decode, raw)
  if ok and type(session) == 'table' then
    ttl, sliding = session.ttlSeconds, tostring(session.sliding)
  end
end
ttl = tonumber(ttl)
if sliding == 'true' and ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return cjson.encode({ v = raw, ttl = redis.call('TTL', KEYS[1]) })
`;

/** The session, renewed when sliding, or null when it does not exist (or has expired). */
export async function readSession(services: Services, token: string): Promise<SessionView | null> {
  const key = sessionKey(services, token);
  const reply = await redisCall("session read", () =>
    services.redis.createScript<unknown>(READ_SCRIPT).exec([key], []),
  );
  if (reply === null || reply === undefined) return null;
  // The client JSON-parses string replies unless automatic deserialization is off.
  const { v, ttl } = (typeof reply === "string" ? JSON.parse(reply) : reply) as {
    v: string;
    ttl: number;
  };
  const parsed = storedSchema.safeParse(JSON.parse(v));
  // Not ours (or from an incompatible release): treat as absent rather than fail the request.
  if (!parsed.success) return null;
  const session = parsed.data;
  return {
    userId: session.userId,
    data: session.data,
    createdAt: session.createdAt,
    sliding: session.sliding,
    // TTL answers -2 if the key vanished between commands (it cannot inside a script) and -1
    // without an expiry (never set by us); neither is a positive remaining lifetime.
    ttlSeconds: Math.max(0, Number(ttl)),
  };
}

/** true when the session existed. */
export async function deleteSession(services: Services, token: string): Promise<boolean> {
  const key = sessionKey(services, token);
  return (await redisCall("session delete", () => services.redis.del(key))) > 0;
}
