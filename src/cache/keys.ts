import { BoundedMap } from "./bounded-map";

/**
 * Redis key layout. Everything lives under one prefix so a deployment can share a database.
 *   {p}:e:{key}   entry hash          {p}:l:{key}   single-flight lease
 *   {p}:v:{name}  newest version      {p}:t:{tag}   tag counter
 *   {p}:stats:{s} counters, shard s   {p}:hot:{n}:{s} sampled hot keys of window n, shard s
 *   {p}:tb        time of the latest tag bump (fill.lua tells "never bumped" from "evicted")
 */
export interface KeySpace {
  /** `{p}:e:{key}`; throws InvalidKeyError for an invalid key, like the other builders. */
  entry(key: string): string;
  lease(key: string): string;
  version(name: string): string;
  tag(name: string): string;
  /** `{p}:tb`: Redis time (ms) of the prefix's latest tag bump, one key for all isolates. */
  readonly tagClock: string;
  /** Stats shard `shard` (0..N-1): each isolate writes one, readers sum them all. */
  stats(shard: number): string;
  /** Hot-key samples of window `window` (floor(redisNow / windowMs)), shard `shard`. */
  hot(window: number, shard: number): string;
  readonly prefix: string;
}

// Glob metacharacters are refused in names so that a key or tag can never widen a pattern
// purge (SCAN MATCH) or collide with another key's pattern; whitespace and control
// characters are refused because they make keys unreadable in every tool; and so are lone
// UTF-16 surrogates (\p{Cs} in a `u` regex matches only unpaired ones): UTF-8 has no encoding
// for them, so every one became U+FFFD on the way to Redis and "a\uD800" and "a\uDC00" were one
// key.
const NAME = /^[^\s*?[\]\\\p{Cc}\p{Cs}]{1,512}$/u;
/** The ASCII part of NAME: 0x21–0x7E without `*` (2A), `?` (3F), `[` (5B), `\` (5C), `]` (5D). */
const ASCII_NAME = /^[!-)+->@-Z^-~]{1,512}$/;

/**
 * A key, tag, version name or pattern the engine refuses: empty, longer than 512 characters,
 * or containing whitespace, control characters or `* ? [ ] \`. Thrown before any request, so
 * it is a caller's bug (or bad input): answer 400, never fall back to the outbox.
 *
 * @example
 * ```ts
 * try {
 *   await cache.getOrLoad(`search:${query}`, load);
 * } catch (error) {
 *   if (!(error instanceof InvalidKeyError)) throw error;
 *   return Response.json({ error: { code: "bad_request", message: error.message } }, { status: 400 });
 * }
 * ```
 */
export class InvalidKeyError extends Error {
  constructor(
    kind: string,
    name: unknown,
    rule = "use 1-512 characters without whitespace or * ? [ ] \\",
  ) {
    super(
      typeof name === "string"
        ? `Invalid cache ${kind} ${JSON.stringify(name.slice(0, 80))}: ${rule}`
        : `Invalid cache ${kind}: a name must be a string, got ${Array.isArray(name) ? "an array" : name === null ? "null" : typeof name}`,
    );
    this.name = "InvalidKeyError";
  }
}

/**
 * Returns `name` if it is a valid key, tag or version name; throws InvalidKeyError otherwise,
 * for anything but a string too: untyped input (a queue message's JSON, a JavaScript caller)
 * was coerced, so `undefined` became the key "undefined" and `["a", "b"]` the tag "a,b".
 *
 * @example
 * ```ts
 * assertName("key", "product:42"); // "product:42"
 * assertName("tag", "a b");        // throws InvalidKeyError
 * assertName("key", undefined as unknown as string); // throws InvalidKeyError
 * ```
 */
export function assertName(kind: string, name: string): string {
  if (typeof name !== "string") throw new InvalidKeyError(kind, name);
  if (validNames.has(name)) return name;
  // Printable ASCII but space and `* ? [ ] \`: valid by the rule above, decided by a plain
  // regex. Not remembered: with more distinct names than the set holds (a big catalogue), the
  // set kept filling up and clearing, and every read paid the Unicode regex again (~0.3 µs per
  // name, measured: bench/results/profile-notes.md, session 10).
  if (ASCII_NAME.test(name)) return name;
  if (!NAME.test(name)) throw new InvalidKeyError(kind, name);
  // Every read checks its key, lease, version key and tags: the same few names, many times.
  // Remembering the valid ones skips the Unicode regex (the largest cost of a read's own code
  // in a profile); cleared when full, so it stays bounded.
  if (validNames.size >= MAX_REMEMBERED_NAMES) validNames.clear();
  validNames.add(name);
  return name;
}

const validNames = new Set<string>();
const MAX_REMEMBERED_NAMES = 10_000;

/**
 * The Redis key names under `prefix` (1–32 of `A-Z a-z 0-9 _ -`), validating each name.
 * `EdgeCache#keys` is one; use it to find an entry with redis-cli or in a test.
 *
 * @example
 * ```ts
 * const keys = keySpace("shop");
 * keys.entry("product:42");   // "shop:e:product:42"
 * keys.version("product:42"); // "shop:v:product:42"
 * keys.tag("products");       // "shop:t:products"
 * ```
 */
export function keySpace(prefix: string): KeySpace {
  // Engines are built per request: one KeySpace per prefix per isolate is enough. Bounded, as
  // an app may give each tenant its own prefix: one dropped for room is only built again.
  let space = spaces.get(prefix);
  if (!space) {
    space = buildKeySpace(prefix);
    spaces.set(prefix, space);
  }
  return space;
}

const spaces = new BoundedMap<string, KeySpace>(256);

function buildKeySpace(prefix: string): KeySpace {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(prefix)) {
    throw new InvalidKeyError("prefix", prefix, "use 1-32 of A-Z a-z 0-9 _ -");
  }
  return {
    prefix,
    stats: (shard) => `${prefix}:stats:${shard}`,
    tagClock: `${prefix}:tb`,
    hot: (window, shard) => `${prefix}:hot:${window}:${shard}`,
    entry: (key) => `${prefix}:e:${assertName("key", key)}`,
    lease: (key) => `${prefix}:l:${assertName("key", key)}`,
    version: (name) => `${prefix}:v:${assertName("version key", name)}`,
    tag: (name) => `${prefix}:t:${assertName("tag", name)}`,
  };
}

/**
 * Validates a purge glob: the glob is over logical keys; only * ? [ ] are special.
 *
 * @example
 * ```ts
 * assertGlob("product:*"); // "product:*"
 * ```
 */
export function assertGlob(glob: string): string {
  if (typeof glob !== "string") throw new InvalidKeyError("pattern", glob);
  if (!/^[^\s\p{Cc}\p{Cs}]{1,512}$/u.test(glob)) {
    throw new InvalidKeyError("pattern", glob);
  }
  return glob;
}
