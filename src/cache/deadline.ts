/**
 * A deadline for the caller's loader (`loadTimeout`). Redis calls have the client's deadline,
 * but a loader is the caller's code: an origin `fetch` with no timeout, a query on a hung
 * connection. Without one a hung load held its request until the runtime killed it, and its
 * followers, taking over once its lease expired, each started another load that hung too.
 */

/**
 * A load that had not settled after `loadTimeout` ms: the read goes on as if the loader had
 * thrown it (a fail-safe value where one is kept, else this error; the lease is released).
 *
 * @example
 * ```ts
 * try {
 *   await cache.getOrLoad("product:42", (signal) => fetchProduct(42, { signal }), {
 *     loadTimeout: 1_500,
 *   });
 * } catch (error) {
 *   if (error instanceof LoadTimeoutError) return new Response("origin too slow", { status: 504 });
 *   throw error;
 * }
 * ```
 */
export class LoadTimeoutError extends Error {
  constructor(
    readonly key: string,
    readonly timeoutMs: number,
  ) {
    super(`loader for ${key} did not settle within ${timeoutMs} ms`);
    this.name = "LoadTimeoutError";
  }
}

/**
 * `loader` under a deadline: each call gets its own `AbortSignal`, aborted (with the
 * LoadTimeoutError as its reason) when the deadline passes, and rejects then whatever the
 * loader does. Pass the signal on (`fetch(url, { signal })`) so the abandoned work stops too;
 * a loader that ignores it runs on, and what it settles with later is dropped.
 *
 * @example
 *   const load = withLoadTimeout("product:42", (signal) => fetch(url, { signal }), 1_500);
 *   await load(); // rejects with LoadTimeoutError after 1.5 s
 */
export function withLoadTimeout<T>(
  key: string,
  loader: (signal?: AbortSignal) => Promise<T>,
  timeoutMs: number,
): () => Promise<T> {
  return () => {
    const controller = new AbortController();
    // Assigned by the executor below, which runs at once.
    let timer!: ReturnType<typeof setTimeout>;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new LoadTimeoutError(key, timeoutMs);
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    });
    let load: Promise<T>;
    try {
      load = loader(controller.signal);
    } catch (error) {
      clearTimeout(timer);
      return Promise.reject(error);
    }
    return Promise.race([load, expired]).finally(() => clearTimeout(timer));
  };
}
