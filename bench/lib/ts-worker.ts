/**
 * Starts a TypeScript module in a worker thread. Workers do not inherit tsx's loader, so each is
 * booted through tsx's API: the same under `npm run bench` (tsx) and under vitest.
 */
import { Worker } from "node:worker_threads";

export function tsWorker(moduleUrl: URL, workerData?: unknown): Worker {
  const boot = `import("tsx/esm/api").then(({ tsImport }) => tsImport(${JSON.stringify(moduleUrl.href)}, ${JSON.stringify(import.meta.url)})).catch((err) => { console.error("worker boot failed:", err); process.exit(1); })`;
  return new Worker(boot, { eval: true, workerData });
}
