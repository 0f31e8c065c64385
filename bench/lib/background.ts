/**
 * A stand-in for Workers' `ctx.waitUntil`: work handed to it runs after the response (it is not
 * awaited by the read), and `settle()` waits for it so workloads can inspect the cache afterwards.
 */
export class Background {
  readonly #pending = new Set<Promise<unknown>>();
  readonly waitUntil = (promise: Promise<unknown>): void => {
    const tracked = promise.catch(() => undefined).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  };
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }
}
