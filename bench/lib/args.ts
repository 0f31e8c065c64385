/**
 * The `--name=value` numeric flags of the single-purpose bench scripts (bench:stampede,
 * bench:drain, bench:eviction, bench/pubsub.ts). Each script declares its flags once, with a
 * default and a line of help, so `--help` prints them and exits instead of starting a run of
 * several minutes, and a mistyped flag (`--reader=500`) or a value that is not a number stops
 * the script with what to type instead of silently running with the defaults or NaN.
 *
 * @example
 *   const args = benchArgs("npm run bench:stampede --", "Concurrent cold reads of one key.", {
 *     readers: { default: 200, help: "concurrent readers per round" },
 *   });
 *   args.readers; // 200, or 500 with `npm run bench:stampede -- --readers=500`
 */
export interface NumberFlag {
  default: number;
  help: string;
}

export type FlagValues<S extends Record<string, NumberFlag>> = { [K in keyof S]: number };

/** What a command line asks for: help, a run with these values, or nothing (it is wrong). */
export type ParsedArgs<S extends Record<string, NumberFlag>> =
  | { kind: "help" }
  | { kind: "run"; values: FlagValues<S> }
  | { kind: "error"; message: string };

/** Parses `argv` (the arguments after the script) against `spec`; pure, so it is tested. */
export function parseBenchArgs<S extends Record<string, NumberFlag>>(
  spec: S,
  argv: readonly string[],
): ParsedArgs<S> {
  if (argv.includes("--help") || argv.includes("-h")) return { kind: "help" };
  const values = Object.fromEntries(
    Object.entries(spec).map(([name, flag]) => [name, flag.default]),
  ) as Record<string, number>;
  for (const arg of argv) {
    const match = /^--([a-z][a-z0-9-]*)=(.*)$/.exec(arg);
    const name = match?.[1];
    if (!match || name === undefined || !Object.hasOwn(spec, name)) {
      return { kind: "error", message: `unknown argument ${arg}` };
    }
    const value = match[2]?.trim() ? Number(match[2]) : Number.NaN;
    if (!Number.isFinite(value)) {
      return { kind: "error", message: `--${name} must be a number, got "${match[2]}"` };
    }
    values[name] = value;
  }
  return { kind: "run", values: values as FlagValues<S> };
}

/** The usage text: the command, what it does, and each flag with its default. */
export function benchUsage(command: string, about: string, spec: Record<string, NumberFlag>) {
  const width = Math.max(...Object.keys(spec).map((name) => name.length)) + 3;
  const lines = Object.entries(spec).map(
    ([name, flag]) => `  --${`${name}=`.padEnd(width)}${flag.help} (default ${flag.default})`,
  );
  return `${command} [--name=value ...]\n${about}\n\n${lines.join("\n")}`;
}

/**
 * The flags of this process's command line: prints the usage and exits 0 on `--help`, prints
 * the problem and the usage and exits 2 on an unknown flag or a value that is not a number.
 */
export function benchArgs<S extends Record<string, NumberFlag>>(
  command: string,
  about: string,
  spec: S,
  argv: readonly string[] = process.argv.slice(2),
): FlagValues<S> {
  const parsed = parseBenchArgs(spec, argv);
  if (parsed.kind === "run") return parsed.values;
  const usage = benchUsage(command, about, spec);
  if (parsed.kind === "help") {
    console.log(usage);
    process.exit(0);
  }
  console.error(`${parsed.message}\n\n${usage}`);
  process.exit(2);
}
