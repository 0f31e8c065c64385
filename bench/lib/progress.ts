/**
 * Progress for long bench commands, readable both in a terminal and in a log.
 *
 * On a terminal each line overwrites the last (`\r` and clear-line), and `end()` moves past it.
 * Piped or captured (CI, `| tee`), `\r` would run every update into one endless line: then an
 * update is printed as its own line, at most one every `everyMs`, and the last one by `end()`.
 *
 * @example
 *   const progress = progressLine();
 *   for (let i = 0; i < n; i++) progress.update(`[bench] round ${i + 1}/${n}`);
 *   progress.end();
 */
export function progressLine(
  out: { isTTY?: boolean; write(text: string): unknown } = process.stdout,
  everyMs = 2000,
): { update(line: string): void; end(): void } {
  let last = Number.NEGATIVE_INFINITY;
  let pending: string | undefined;
  let shown = false;
  return {
    update(line) {
      if (out.isTTY) {
        out.write(`\r\x1b[2K${line}`);
        shown = true;
        return;
      }
      pending = line;
      const now = performance.now();
      if (now - last < everyMs) return;
      last = now;
      out.write(`  … ${line}\n`);
      pending = undefined;
    },
    end() {
      if (out.isTTY) {
        if (shown) out.write("\n");
        shown = false;
      } else if (pending !== undefined) {
        out.write(`  … ${pending}\n`);
      }
      pending = undefined;
    },
  };
}
