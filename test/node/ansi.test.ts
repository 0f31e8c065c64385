import { describe, expect, it } from "vitest";
import { withoutAnsi } from "../../tools/lib/ansi";

describe("withoutAnsi (npm run dev's piped worker lines)", () => {
  it("drops colour and cursor escapes and keeps the text", () => {
    expect(withoutAnsi("\u001b[31mERROR\u001b[0m boom \u001b[2mdim\u001b[22m \u001b[2K")).toBe(
      "ERROR boom dim ",
    );
    expect(withoutAnsi("plain [worker] text")).toBe("plain [worker] text");
  });
});
