/**
 * Who a request counts against for rate limiting.
 *
 * - `CF-Connecting-IP` is the only source: Cloudflare sets it on every request that reaches a
 *   deployed Worker and overwrites any value the client sent, and `wrangler dev` injects it
 *   from workerd's client address. `X-Forwarded-For` is never read: the client writes it.
 * - IPv6 clients are keyed by their /64: one subscriber usually holds a whole /64, so a
 *   per-address limit would give them 2^64 budgets.
 * - Without a usable header (in-process tests, service bindings, a proxy that drops it) every
 *   such request shares the one identity {@link LOCAL_CLIENT}: a caller cannot mint a fresh
 *   budget by omitting or garbling the header.
 */
export const LOCAL_CLIENT = "local";

/**
 * The rate-limit identity for a `CF-Connecting-IP` value.
 *
 * @example
 * clientIdentity("203.0.113.7");            // "203.0.113.7"
 * clientIdentity("2001:db8:1:2:3:4:5:6");   // "2001:db8:1:2::/64"
 * clientIdentity("::ffff:198.51.100.1");    // "198.51.100.1"
 * clientIdentity(undefined);                // "local"
 * clientIdentity("not an ip");              // "local"
 */
export function clientIdentity(header: string | undefined | null): string {
  const value = header?.trim() ?? "";
  if (value === "" || value.length > 64) return LOCAL_CLIENT;
  const v4 = ipv4(value);
  if (v4) return v4;
  const groups = ipv6Groups(value);
  if (!groups) return LOCAL_CLIENT;
  // IPv4-mapped (::ffff:a.b.c.d): the client is the IPv4 address.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

function ipv4(text: string): string | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : Number.NaN));
  if (bytes.some((b) => !(b >= 0 && b <= 255))) return null;
  return bytes.join(".");
}

/** The eight 16-bit groups of an IPv6 address (with `::` and a dotted IPv4 tail), or null. */
function ipv6Groups(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] ?? "";
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = ipv4(piece);
        if (!v4) return null;
        const [a = 0, b = 0, c = 0, d = 0] = v4.split(".").map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9a-f]{1,4}$/i.test(piece)) {
        out.push(Number.parseInt(piece, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = parse(halves[0] ?? "");
  const tail = halves.length === 2 ? parse(halves[1] ?? "") : [];
  if (!head || !tail) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}
