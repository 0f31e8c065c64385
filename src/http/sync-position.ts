import type { Context } from "hono";
import { getCookie } from "hono/cookie";

/**
 * A client's sync position (Upstash's `upstash-sync-token`) carried end to end, so a client
 * reads its own writes when hits are served by a read replica (`consistency: "replica"`).
 *
 * The request's Upstash client starts from the position the request brings (header
 * `X-Sync-Token`, or cookie `ec_sync`; the header wins) and every Redis request it makes sends
 * it: a replica serves a read only once it has replicated that far. When the client ends the
 * request at another position (it wrote, or read from a server further ahead), the response
 * hands the new one back in both forms: the header for API clients that keep it themselves,
 * the cookie for browsers that do nothing.
 *
 * The value is opaque (Upstash does not document its form; the local gateway sends replication
 * offsets). Anything outside 1–128 characters of `[A-Za-z0-9._:-]` is ignored, never an error:
 * a client with a broken cookie still gets its answer, only without read-your-writes.
 */
export const SYNC_HEADER = "X-Sync-Token";
export const SYNC_COOKIE = "ec_sync";
/**
 * The cookie's lifetime (s). A position matters only until every replica has passed it, which is
 * the replication lag (ms to a few s); afterwards carrying it costs nothing and changes nothing.
 * Short, so a stale position does not ride along for days.
 */
export const SYNC_COOKIE_MAX_AGE_S = 300;

const VALID = /^[A-Za-z0-9._:-]{1,128}$/;

export function isSyncToken(value: unknown): value is string {
  return typeof value === "string" && VALID.test(value);
}

/** The position the request carries: a valid header, else a valid cookie, else none. */
export function incomingSyncToken(c: Context): string | undefined {
  const header = c.req.header(SYNC_HEADER);
  if (isSyncToken(header)) return header;
  const cookie = getCookie(c, SYNC_COOKIE);
  return isSyncToken(cookie) ? cookie : undefined;
}

/**
 * Answers with the client's position when the request moved it. `after` is undefined when the
 * request never made a Redis client; a position that is not a valid token (an empty one: a
 * response without the header resets the client's) is not handed out, as no request could
 * bring it back.
 */
export function answerSyncToken(
  c: Context,
  before: string | undefined,
  after: string | undefined,
): void {
  if (after === undefined || after === (before ?? "") || !isSyncToken(after)) return;
  c.header(SYNC_HEADER, after);
  // Written by hand: a valid token holds only cookie-safe characters, so the cookie carries it
  // byte for byte, the same as the header (hono's setCookie would percent-encode ':').
  const secure = new URL(c.req.url).protocol === "https:" ? "; Secure" : "";
  c.header(
    "Set-Cookie",
    `${SYNC_COOKIE}=${after}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SYNC_COOKIE_MAX_AGE_S}${secure}`,
    { append: true },
  );
}
