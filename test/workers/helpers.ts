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
 * keeps what was sent, or throws `fail` when set, or never answers when `hang` is set (a
 * degraded Queues producer). `calls` counts every send and sendBatch. With `limits` it refuses
 * what Cloudflare Queues refuses (developers.cloudflare.com/queues/platform/limits): a message
 * over 128 KB, a sendBatch of more than 100 messages or 256 KB (JSON bytes; KB = 1,000 bytes, as
 * miniflare counts). Without sending to the real binding, whose consumer is this Worker.
 */
export class FakeQueue {
  readonly sent: unknown[] = [];
  fail: Error | null = null;
  /** When set, the calls from this one on (1-based) fail, as if the queue went away part-way. */
  failFrom: number | null = null;
  hang = false;
  limits = false;
  calls = 0;
  async send(body: unknown): Promise<void> {
    await this.answer();
    this.check([body]);
    this.sent.push(structuredClone(body));
  }
  async sendBatch(messages: Iterable<{ body: unknown }>): Promise<void> {
    await this.answer();
    const bodies = [...messages].map((m) => m.body);
    this.check(bodies);
    for (const body of bodies) this.sent.push(structuredClone(body));
  }
  private check(bodies: unknown[]): void {
    if (!this.limits) return;
    const sizes = bodies.map((b) => new TextEncoder().encode(JSON.stringify(b)).byteLength);
    if (bodies.length > 100) throw new Error(`batch message count of ${bodies.length} exceeds 100`);
    const largest = Math.max(0, ...sizes);
    if (largest > 128_000) throw new Error(`message of ${largest} bytes exceeds 128000`);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total > 256_000) throw new Error(`batch size of ${total} bytes exceeds 256000`);
  }
  private answer(): Promise<void> {
    this.calls++;
    if (this.hang) return new Promise(() => {});
    if (this.fail) return Promise.reject(this.fail);
    if (this.failFrom !== null && this.calls >= this.failFrom) {
      return Promise.reject(new Error(`queue went away at call ${this.calls}`));
    }
    return Promise.resolve();
  }
  asQueue(): Queue<unknown> {
    return this as unknown as Queue<unknown>;
  }
}

/**
 * `work`, or "no answer" when it has not settled within `ms`: a hang fails the test's own
 * assertion instead of running into the test timeout.
 */
export function within<T>(ms: number, work: Promise<T>): Promise<T | "no answer"> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const late = new Promise<"no answer">((resolve) => {
    timer = setTimeout(() => resolve("no answer"), ms);
  });
  return Promise.race([work, late]).finally(() => {
    if (timer !== null) clearTimeout(timer);
  });
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

/** A batch of the purge queue (or `queue`), delivered for the first time unless `attempts` says otherwise. */
export function purgeBatch(messages: QueuedMessage[], queue = "edgecache-purge") {
  return createMessageBatch(
    queue,
    messages.map((m) => ({
      id: m.id,
      timestamp: m.timestamp ?? new Date(),
      attempts: m.attempts ?? 1,
      body: m.body,
    })),
  );
}

/**
 * Hands a batch of the purge queue (or of `queue`, e.g. its dead-letter queue) to the Worker's
 * queue handler: which messages it acked or retried.
 */
export async function consumeBatch(messages: QueuedMessage[], bindings: Env, queue?: string) {
  const batch = purgeBatch(messages, queue);
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
