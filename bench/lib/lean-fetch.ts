import http from "node:http";

/**
 * `--transport=lean`: replaces the process's `fetch` with a thin one over `node:http`, for every
 * contender alike.
 *
 * Why: Node's `fetch` (undici behind WHATWG streams) spends ~300–450 µs of JavaScript per
 * request on this machine, several times what the caches themselves spend, so the default run
 * mostly measures Node's HTTP client, which no Worker runs: workerd's `fetch` is native. The lean
 * transport costs a fraction of that per request, so what each cache does per operation (its
 * own JavaScript, how many round trips it waits in sequence, how it coalesces) shows through.
 * It implements what `@upstash/redis` uses of `fetch`: method, headers, a string body, an abort
 * signal, and a response with `ok`, `status`, `headers.get` and `text()`/`json()`.
 *
 * @example
 *   installLeanFetch(); // then every Upstash client in this thread goes through it
 */
export function installLeanFetch(): void {
  (globalThis as { fetch: unknown }).fetch = leanFetch;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/**
 * The lean `fetch` itself (see installLeanFetch): what `@upstash/redis` needs of it, over plain
 * HTTP, which is all the bench's gateway speaks.
 */
export function leanFetch(input: string | URL, init: LeanInit = {}): Promise<LeanResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      input,
      { method: init.method ?? "GET", headers: init.headers, agent, signal: init.signal },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          resolve({
            ok: status >= 200 && status < 300,
            status,
            headers: { get: (name: string) => header(res.headers[name.toLowerCase()]) },
            text: async () => text,
            json: async () => JSON.parse(text) as unknown,
            body: null,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

export interface LeanInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

export interface LeanResponse {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<unknown>;
  body: null;
}

function header(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}
