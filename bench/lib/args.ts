/**
 * `--name=value` numeric flags of the single-purpose bench scripts (bench:stampede, bench:drain,
 * bench:pubsub, bench:eviction). A value that is not a number stops the script with a message
 * naming the flag, rather than running with NaN.
 *
 * @example
 *   const READERS = numberArg("readers", 200); // npm run bench:stampede -- --readers=500
 */
export function numberArg(name: string, fallback: number, argv = process.argv): number {
  const hit = argv.find((a) => a.startsWith(`--${name}=`));
  const value = hit ? Number(hit.slice(name.length + 3)) : fallback;
  if (!Number.isFinite(value)) throw new Error(`--${name} must be a number`);
  return value;
}
