/**
 * A TCP proxy in front of redis-server that adds the same per-round-trip latency as the gateway
 * (base + random jitter, applied to each client→server chunk, order preserved) and counts the
 * RESP commands that pass, so libraries speaking the Redis protocol directly (ioredis) pay what
 * the Upstash-gateway contenders pay and are counted the same way.
 */
import net from "node:net";

export interface LatencyProxy {
  url: string;
  /** Commands forwarded since the last reset. */
  commands: number;
  /** Client→server chunks (≈ round trips: pipelined commands travel together). */
  roundTrips: number;
  reset(): void;
  setLatency(baseMs: number, jitterMs: number): void;
  close(): Promise<void>;
}

/** Counts top-level RESP arrays (`*N\r\n` followed by N bulk strings) in a request stream. */
class RespCounter {
  #buffer: Buffer = Buffer.alloc(0);
  count(chunk: Buffer): number {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    let n = 0;
    let pos = 0;
    for (;;) {
      const end = this.#skipCommand(pos);
      if (end < 0) break;
      pos = end;
      n++;
    }
    this.#buffer = this.#buffer.subarray(pos);
    return n;
  }
  /** End offset of the command starting at `pos`, or -1 when incomplete. */
  #skipCommand(pos: number): number {
    const b = this.#buffer;
    if (pos >= b.length) return -1;
    const line = b.indexOf("\r\n", pos);
    if (line < 0) return -1;
    if (b[pos] !== 0x2a /* '*' */) return line + 2; // inline command
    const items = Number(b.toString("latin1", pos + 1, line));
    let at = line + 2;
    for (let i = 0; i < items; i++) {
      const lenEnd = b.indexOf("\r\n", at);
      if (lenEnd < 0) return -1;
      const len = Number(b.toString("latin1", at + 1, lenEnd));
      at = lenEnd + 2 + len + 2;
      if (at > b.length) return -1;
    }
    return at;
  }
}

export async function startLatencyProxy(targetPort: number): Promise<LatencyProxy> {
  let base = 0;
  let jitter = 0;
  const sockets = new Set<net.Socket>();
  const proxy: LatencyProxy = {
    url: "",
    commands: 0,
    roundTrips: 0,
    reset() {
      proxy.commands = 0;
      proxy.roundTrips = 0;
    },
    setLatency(baseMs, jitterMs) {
      base = baseMs;
      jitter = jitterMs;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const counter = new RespCounter();
    sockets.add(client);
    sockets.add(upstream);
    // A FIFO drained by one timer: each chunk leaves after its own delay and never before an
    // earlier chunk (separate timers with different delays could reorder the RESP stream).
    const queue: { chunk: Buffer; at: number }[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drain = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0]?.at ?? 0) <= now + 0.5) {
        upstream.write((queue.shift() as { chunk: Buffer }).chunk);
      }
      const head = queue[0];
      if (head) timer = setTimeout(drain, head.at - now);
    };
    client.on("data", (chunk: Buffer) => {
      proxy.commands += counter.count(chunk);
      proxy.roundTrips++;
      const last = queue[queue.length - 1]?.at ?? 0;
      queue.push({ chunk, at: Math.max(last, performance.now() + base + Math.random() * jitter) });
      if (!timer) timer = setTimeout(drain, Math.max(0, (queue[0]?.at ?? 0) - performance.now()));
    });
    upstream.on("data", (chunk) => client.write(chunk));
    const end = () => {
      if (timer) clearTimeout(timer);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
