import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  env,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
import worker from "../../functions/index";
import type { Env } from "../../src/config/env";
import { createServices, type Services } from "../../src/runtime/services";

/**
 * A stand-in for the purge queue's producer (Cloudflare's Queue has no local twin we can read):
 * keeps what was sent, or throws `fail` when set.
 */
export class FakeQueue {
  readonly sent: unknown[] = [];
  fail: Error | null = null;
  async send(body: unknown): Promise<void> {
    if (this.fail) throw this.fail;
    this.sent.push(structuredClone(body));
  }
  async sendBatch(messages: Iterable<{ body: unknown }>): Promise<void> {
    if (this.fail) throw this.fail;
    for (const m of messages) this.sent.push(structuredClone(m.body));
  }
  asQueue(): Queue<unknown> {
    return this as unknown as Queue<unknown>;
  }
}

/** The Worker's bindings for a test file's cache prefix, with `overrides`. */
export const testEnv = (prefix: string, overrides: Partial<Env> = {}): Env => ({
  ...env,
  CACHE_PREFIX: prefix,
  ...overrides,
});

/** Runs `fn` with the Worker's services on those bindings, disposing of them afterwards. */
export async function withServices<T>(
  prefix: string,
  overrides: Partial<Env>,
  fn: (services: Services) => Promise<T>,
): Promise<T> {
  const services = createServices(testEnv(prefix, overrides));
  try {
    return await fn(services);
  } finally {
    await services.dispose();
  }
}

export type QueuedMessage = { id: string; body: unknown; attempts?: number; timestamp?: Date };

/** A batch of the purge queue, delivered for the first time unless `attempts` says otherwise. */
export function purgeBatch(messages: QueuedMessage[]) {
  return createMessageBatch(
    "edgecache-purge",
    messages.map((m) => ({
      id: m.id,
      timestamp: m.timestamp ?? new Date(),
      attempts: m.attempts ?? 1,
      body: m.body,
    })),
  );
}

/** Hands a purge batch to the Worker's queue handler: which messages it acked or retried. */
export async function consumeBatch(messages: QueuedMessage[], bindings: Env) {
  const batch = purgeBatch(messages);
  const ctx = createExecutionContext();
  await worker.queue(batch, bindings, ctx);
  return getQueueResult(batch, ctx);
}

/** Runs the Worker's cron handler once and waits for its waitUntil work. */
export async function runScheduled(bindings: Env, scheduledTime = Date.now()): Promise<void> {
  const controller = createScheduledController({ cron: "*/5 * * * *", scheduledTime });
  const ctx = createExecutionContext();
  await worker.scheduled(controller, bindings, ctx);
  await waitOnExecutionContext(ctx);
}
