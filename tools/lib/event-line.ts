/**
 * One readable line per published event, for `npm run events`. Pure: no I/O, no clock.
 *
 * The queue consumer publishes `{keys, tags, versions, messages, origin, at}` on
 * `{CACHE_PREFIX}:events`; anything else (a hand-made PUBLISH, another channel under a
 * pattern) is shown as its text, shortened.
 */

/** What the purge consumer publishes for each applied batch (src/jobs/purge.ts). */
export interface AppliedEvent {
  keys?: string[];
  tags?: string[];
  versions?: Record<string, number>;
  messages?: number;
  origin?: string;
  at?: number;
}

export interface LineOptions {
  /** When the line is printed (ms since epoch): the time shown, and the lag to `at`. */
  now: number;
  /** The channel, shown when it is not the one being watched (pattern subscriptions). */
  channel?: string;
  /** Names shown per list before "+N more". Default 4. */
  names?: number;
  /** Longest line, in characters. Default 160. */
  width?: number;
}

const DAY_MS = 86_400_000;

function isAppliedEvent(value: unknown): value is AppliedEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  const list = (x: unknown) =>
    x === undefined || (Array.isArray(x) && x.every((s) => typeof s === "string"));
  const versions =
    v.versions === undefined ||
    (typeof v.versions === "object" && v.versions !== null && !Array.isArray(v.versions));
  return (
    list(v.keys) && list(v.tags) && versions && ("keys" in v || "tags" in v || "versions" in v)
  );
}

function clock(ms: number): string {
  // Local time of day with milliseconds: what a person watching compares with their logs.
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function names(label: string, list: readonly string[], max: number): string {
  if (list.length === 0) return `${label} 0`;
  const shown = list.slice(0, max).join(", ");
  const more = list.length > max ? ` +${list.length - max} more` : "";
  return `${label} ${list.length}: ${shown}${more}`;
}

function shorten(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/** One line, whatever the payload holds. */
const flat = (text: string) => text.replace(/\s*[\r\n]+\s*/g, " ");

/**
 * @example
 * formatEvent({ keys: ["product:1"], tags: [], versions: { "product:1": 7 }, messages: 2,
 *   origin: "purge", at: 1_700_000_000_000 }, { now: 1_700_000_000_040 })
 * // "22:13:20.040  purge  2 msgs  keys 1: product:1  tags 0  versions 1: product:1=7  lag 40 ms"
 * // (the time is local)
 */
export function formatEvent(message: unknown, opts: LineOptions): string {
  const max = opts.names ?? 4;
  const width = opts.width ?? 160;
  const parts = [clock(opts.now)];
  if (opts.channel) parts.push(`[${opts.channel}]`);
  if (!isAppliedEvent(message)) {
    const text = typeof message === "string" ? message : JSON.stringify(message);
    parts.push(`message: ${flat(text)}`);
    return shorten(parts.join("  "), width);
  }
  const versions = Object.entries(message.versions ?? {}).map(([k, v]) => `${k}=${v}`);
  parts.push(message.origin ?? "?");
  if (typeof message.messages === "number") {
    parts.push(`${message.messages} msg${message.messages === 1 ? "" : "s"}`);
  }
  parts.push(names("keys", message.keys ?? [], max));
  parts.push(names("tags", message.tags ?? [], max));
  parts.push(names("versions", versions, max));
  if (typeof message.at === "number") {
    // Lag from publish to print; a clock that far off is shown as the time it claims.
    const lag = opts.now - message.at;
    parts.push(
      lag >= 0 && lag < DAY_MS ? `lag ${lag} ms` : `at ${new Date(message.at).toISOString()}`,
    );
  }
  return shorten(parts.join("  "), width);
}
