/**
 * Unique, not secret, identities: lease tokens (a lease only tells holders apart) and fill ids
 * (what tells two fills of one entry apart, see read/checks.ts). Random bytes drawn once per
 * isolate plus a counter cost far less per read than fresh random bytes (measured:
 * bench/results/profile-notes.md). Drawn on first use, not at import: workerd refuses random
 * values in global scope. Letters and digits only: hit.lua splices a fill id into its reply as
 * is.
 *
 * @example
 *   newToken(); // "9f2c41d07ab3e5c81"
 *   newToken(); // "9f2c41d07ab3e5c82"
 */
let isolateId = "";
let tokens = 0;
export function newToken(): string {
  if (!isolateId) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    isolateId = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  tokens = (tokens + 1) % Number.MAX_SAFE_INTEGER;
  return `${isolateId}${tokens.toString(36)}`;
}
