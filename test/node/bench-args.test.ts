/**
 * The single-purpose bench scripts' flags (bench/lib/args.ts): `--help` answers with the usage
 * instead of starting a run of minutes, and a mistyped flag or a non-number stops the script
 * (they used to ignore both and run with the defaults).
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { benchUsage, parseBenchArgs } from "../../bench/lib/args";

const spec = {
  readers: { default: 200, help: "concurrent cold reads" },
  "load-ms": { default: 50, help: "loader time, ms" },
};

describe("parseBenchArgs", () => {
  it("gives the defaults, overridden by --name=value", () => {
    expect(parseBenchArgs(spec, [])).toEqual({
      kind: "run",
      values: { readers: 200, "load-ms": 50 },
    });
    expect(parseBenchArgs(spec, ["--readers=500", "--load-ms=2.5"])).toEqual({
      kind: "run",
      values: { readers: 500, "load-ms": 2.5 },
    });
  });

  it("asks for help on --help or -h, wherever it is", () => {
    expect(parseBenchArgs(spec, ["--readers=5", "--help"])).toEqual({ kind: "help" });
    expect(parseBenchArgs(spec, ["-h"])).toEqual({ kind: "help" });
  });

  it("refuses an unknown flag, a flag without a value and a value that is not a number", () => {
    expect(parseBenchArgs(spec, ["--reader=500"])).toEqual({
      kind: "error",
      message: "unknown argument --reader=500",
    });
    expect(parseBenchArgs(spec, ["--readers"])).toMatchObject({ kind: "error" });
    expect(parseBenchArgs(spec, ["500"])).toMatchObject({ kind: "error" });
    expect(parseBenchArgs(spec, ["--readers=many"])).toEqual({
      kind: "error",
      message: '--readers must be a number, got "many"',
    });
    expect(parseBenchArgs(spec, ["--readers="])).toMatchObject({ kind: "error" });
    // Inherited names are not flags.
    expect(parseBenchArgs(spec, ["--constructor=1"])).toMatchObject({ kind: "error" });
  });

  it("lists every flag with its default in the usage", () => {
    const usage = benchUsage("npm run bench:x --", "What it does.", spec);
    expect(usage).toContain("npm run bench:x --");
    expect(usage).toContain("What it does.");
    expect(usage).toMatch(/--readers=\s+concurrent cold reads \(default 200\)/);
    expect(usage).toMatch(/--load-ms=\s+loader time, ms \(default 50\)/);
  });
});

describe("the bench scripts", () => {
  const scripts = {
    "bench/stampede.ts": ["--readers=", "--load-ms=", "--rounds="],
    "bench/eviction.ts": ["--keys=", "--fraction="],
    "bench/outbox-drain.ts": ["--rows=", "BENCH_PG_URL"],
    "bench/pubsub.ts": ["--burst=", "--trickle="],
  };
  const run = (script: string, arg: string) =>
    spawnSync(process.execPath, ["--import", "tsx", script, arg], {
      encoding: "utf8",
      timeout: 30_000,
    });

  it.each(Object.entries(scripts))(
    "%s answers --help with its usage and starts nothing",
    (script, expected) => {
      const result = run(script, "--help");
      expect(result.status).toBe(0);
      for (const text of expected) expect(result.stdout).toContain(text);
      // Nothing started: every script logs its stages with a [bench] prefix.
      expect(result.stdout).not.toContain("[bench]");
    },
    30_000,
  );

  it("stops with exit code 2 and the usage on a mistyped flag", () => {
    const result = run("bench/stampede.ts", "--reader=500");
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("unknown argument --reader=500");
    expect(result.stderr).toContain("--readers=");
  }, 30_000);
});
