/**
 * The engine as it was at another git revision, for an A/B run in one bench process
 * (`npm run bench -- --against=<rev>`): `src/cache` of that commit is extracted (git archive)
 * into `bench/.ab/<sha>/` (gitignored) and imported from there, beside today's engine. Both
 * run in the same turns, over the same gateway and the same seeded jitter, which is the only
 * way this machine can tell a few percent apart: separate runs move by more than that (A/A
 * runs, README). `src/cache` imports nothing outside itself, so the copy runs on its own.
 *
 * @example
 *   const { sha, id } = extractEngine("HEAD~1");  // "3546c95a1b", "edgecache@3546c95a1b"
 *   const { EdgeCache } = await import(enginePath(sha));
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const AB_DIR = join(ROOT, "bench/.ab");

/** Contender ids of engines at a revision: `edgecache@<sha>`. */
export const REVISION_ID = /^edgecache@([0-9a-f]{7,40})$/;

/** Where the engine of commit `sha` (as `extractEngine` named it) is imported from. */
export function enginePath(sha: string): string {
  return join(AB_DIR, sha, "src/cache/index.ts");
}

/**
 * Resolves `rev` (a hash, a tag, `HEAD~1`, a branch) to a commit and extracts its `src/cache`
 * once. Throws, saying what to do, when git does not know the revision or it has no engine.
 */
export function extractEngine(rev: string): { sha: string; id: string } {
  let sha: string;
  try {
    sha = git(["rev-parse", "--verify", "--quiet", "--short=10", `${rev}^{commit}`]).trim();
  } catch {
    throw new Error(
      `--against=${rev}: git knows no such commit here; give a hash, a tag or HEAD~N (see git log --oneline)`,
    );
  }
  if (!existsSync(enginePath(sha))) {
    const target = join(AB_DIR, sha);
    const partial = `${target}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    try {
      const archive = execFileSync("git", ["archive", "--format=tar", sha, "src/cache"], {
        cwd: ROOT,
        maxBuffer: 64 * 1024 * 1024,
      });
      execFileSync("tar", ["-x", "-C", partial], { input: archive });
    } catch {
      rmSync(partial, { recursive: true, force: true });
      throw new Error(`--against=${rev}: commit ${sha} has no src/cache to compare with`);
    }
    // Renamed into place only when complete: an interrupted extraction is never imported.
    rmSync(target, { recursive: true, force: true });
    renameSync(partial, target);
  }
  return { sha, id: `edgecache@${sha}` };
}

function git(args: string[]): string {
  return execFileSync("git", args, {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
}
