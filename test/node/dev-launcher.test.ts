import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const running: ChildProcess[] = [];

/** Processes no longer our children (the launched one, once its launcher is gone). */
const orphans: number[] = [];

afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const pid of orphans.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("npm run dev: stopping and starting", () => {
  it("stops what it started once its launcher is gone, though no signal reached it", async () => {
    const marker = join(mkdtempSync(join(tmpdir(), "launcher-")), "gone");
    // The launcher plays npm stopped with SIGTERM: it exits without passing the signal on.
    const launcher = spawn(
      process.execPath,
      [
        "-e",
        `const { spawn } = require("node:child_process");
         const child = spawn(process.execPath, ["--import", "tsx", ${JSON.stringify(join(root, "test/node/fixtures/launched.ts"))}, ${JSON.stringify(marker)}], { cwd: ${JSON.stringify(root)}, stdio: ["ignore", "pipe", "inherit"] });
         child.stdout.once("data", () => console.log(child.pid));
         setInterval(() => {}, 60000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    running.push(launcher);
    const pid = await new Promise<number>((resolve, reject) => {
      launcher.stdout?.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      launcher.once("exit", () => reject(new Error("launcher exited before its child was up")));
    });
    expect(pid).toBeGreaterThan(0);
    orphans.push(pid);

    // While the launcher lives, nothing happens.
    await sleep(300);
    expect(existsSync(marker)).toBe(false);
    expect(alive(pid)).toBe(true);

    launcher.kill("SIGTERM");
    const soon = { timeout: 5_000, interval: 25 };
    await vi.waitFor(() => expect(existsSync(marker)).toBe(true), soon);
    expect(readFileSync(marker, "utf8")).toBe(String(pid));
    await vi.waitFor(() => expect(alive(pid)).toBe(false), soon);
  }, 30_000);

  it("refuses a Worker port that is taken at once, saying what to do", async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const dev = spawn(process.execPath, ["--import", "tsx", "tools/dev.ts"], {
        cwd: root,
        env: { ...process.env, PORT: String(port) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      running.push(dev);
      let output = "";
      dev.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      dev.stderr?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      const code = await new Promise<number | null>((resolve) => dev.once("exit", resolve));
      expect(code).toBe(1);
      expect(output).toContain(`port ${port} (the Worker) is already in use`);
      expect(output).toContain("another `npm run dev` still running?");
      expect(output).toContain("PORT=8788 npm run dev");
      // Refused before starting anything: no gateway, database or wrangler lines.
      expect(output).not.toMatch(/\[(gateway|db|proxy|worker)\]/);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  }, 30_000);
});
