/**
 * What Postgres `text` and `jsonb` refuse of JavaScript strings: U+0000 (the query fails) and a
 * UTF-16 surrogate without its partner (the driver's UTF-8 encoding replaces it with U+FFFD, so
 * what is stored differs from what was sent). Routes refuse such input (src/http/schemas.ts);
 * jobs that must keep whatever came (dead letters) make it storable.
 */

// No `u` flag on purpose: with it a lone surrogate is a code point and never splits.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Whether Postgres can store `value` as `text` exactly (no NUL, no lone surrogate). */
export function isStorableText(value: string): boolean {
  LONE_SURROGATE.lastIndex = 0;
  return !value.includes("\u0000") && !LONE_SURROGATE.test(value);
}

/**
 * `text` as Postgres can store it: NUL kept visible as the two characters `\0`, a lone surrogate
 * as U+FFFD.
 *
 * @example
 * storableText("a\u0000b"); // "a\\0b"
 */
export function storableText(text: string): string {
  return text.replaceAll("\u0000", "\\0").replace(LONE_SURROGATE, "\ufffd");
}
