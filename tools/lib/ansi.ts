/** Colour and cursor escapes (CSI sequences: ESC, "[", parameters, a final byte). */
const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[ -/]*[@-~]`, "g");

/**
 * `text` without terminal escapes: workerd colours its error lines whatever FORCE_COLOR says,
 * and piped into a file or a pager those codes are noise.
 *
 * @example
 * withoutAnsi("\u001b[31mERROR\u001b[0m boom"); // "ERROR boom"
 */
export function withoutAnsi(text: string): string {
  return text.replace(ANSI_ESCAPE, "");
}
