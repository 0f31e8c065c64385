import { copyFileSync, existsSync, readFileSync } from "node:fs";

/** Parses wrangler's .dev.vars (dotenv syntax: KEY=value, # comments, optional quotes). */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    vars[key] = value;
  }
  return vars;
}

/** Loads .dev.vars, creating it from the example on a first run so `npm run dev` just works. */
export function loadDevVars(
  path: string,
  examplePath: string,
  log: (line: string) => void,
): Record<string, string> {
  if (!existsSync(path)) {
    if (!existsSync(examplePath)) throw new Error(`Neither ${path} nor ${examplePath} exists.`);
    copyFileSync(examplePath, path);
    log(`created ${path} from ${examplePath} (local gateway, proxy and database)`);
  }
  return parseDevVars(readFileSync(path, "utf8"));
}
