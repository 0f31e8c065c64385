import { describe, expect, it } from "vitest";
import { progressLine } from "../../bench/lib/progress";

const sink = (isTTY: boolean) => {
  const written: string[] = [];
  return { out: { isTTY, write: (text: string) => written.push(text) }, written };
};

describe("bench progress lines", () => {
  it("overwrite one line on a terminal and end it once", () => {
    const { out, written } = sink(true);
    const progress = progressLine(out);
    progress.update("round 1/3");
    progress.update("round 2/3");
    progress.end();
    progress.end(); // nothing shown since: no blank line
    expect(written).toEqual(["\r\x1b[2Kround 1/3", "\r\x1b[2Kround 2/3", "\n"]);
  });

  it("print whole lines in a log, throttled, with the last one kept for the end", () => {
    const { out, written } = sink(false);
    const progress = progressLine(out, 60_000);
    progress.update("round 1/3");
    progress.update("round 2/3");
    progress.update("round 3/3");
    progress.end();
    // No carriage return anywhere: a captured log keeps one line per update shown.
    expect(written).toEqual(["  … round 1/3\n", "  … round 3/3\n"]);
    expect(written.join("")).not.toContain("\r");
  });
});
