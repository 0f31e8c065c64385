import { describe, expect, it } from "vitest";
import type { EntryOptions } from "../../../src/cache";
import { IsolateTelemetry } from "../../../src/cache/telemetry";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * A fill that cannot be sent because of the value or the caller's own functions (a BigInt or a
 * cycle JSON.stringify refuses, a `tagsOf` tag that is not a name, a `versionOf` giving no
 * version, a `cacheIf` that throws): the loaded value is still answered (MISS), the error goes
 * to onError as the caller's ("fill input", not a Redis error), and the lease goes straight
 * back (one release.lua), so the next reader is not held for `leaseTtl`. Against real Redis
 * through the gateway.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;

const cyclic = (): Record<string, unknown> => {
  const node: Record<string, unknown> = { name: "loop" };
  node.self = node;
  return node;
};

type Row = Record<string, unknown>;
const cases: Array<[string, () => Row, EntryOptions<Row>]> = [
  ["a BigInt in the value", () => ({ n: 1n }), {}],
  ["a cyclic value", cyclic, {}],
  [
    "a tagsOf tag that is not a name",
    () => ({ brand: "Acme Corp" }),
    { tagsOf: (p) => [`brand:${p.brand}`] },
  ],
  [
    "a versionOf giving no version (a missing column)",
    () => ({ ver: 3 }),
    { versionKey: "row:1", versionOf: (p) => p.version as number },
  ],
  ["a cacheIf that throws", () => ({}), { cacheIf: (p) => (p.items as unknown[]).length > 0 }],
];

describe("a fill that fails before its request is sent", () => {
  it.each(cases)(
    "%s: answered as MISS, reported as the caller's error, the lease released at once",
    async (_, value, options) => {
      const prefix = `fi${Math.random().toString(36).slice(2, 8)}`;
      const isolate = new IsolateTelemetry();
      const reported: Array<[unknown, string]> = [];
      const cache = h.cache(
        { telemetry: { isolate }, onError: (error, op) => reported.push([error, op]) },
        prefix,
      );
      const opts = { ...noEarly, ...options };
      const loaded = value();
      // An uncached value gives its lease back too: release.lua is then known to the gateway.
      await cache.getOrLoad("warm", async () => undefined, noEarly);
      await h.resetCounter();
      const first = await cache.getOrLoad("row:1", async () => loaded, opts);
      // acquire.lua (the lease), then release.lua: no fill was sent.
      expect(await h.requests()).toBe(2);
      expect(first).toMatchObject({ status: "MISS", version: null });
      // The loaded value (in its JSON form when it has one: json-values.test.ts).
      expect(first.value).toStrictEqual(loaded);
      expect(reported.map(([, op]) => op)).toEqual(["fill input"]);
      expect(reported[0]?.[0]).toBeInstanceOf(Error);
      expect(isolate.pendingCounters().get("redis_errors") ?? 0).toBe(0);

      const info = await cache.inspect("row:1");
      expect(info.leasePttl).toBe(-2);
      expect(info.state).toBe("absent");
      // Another isolate's reader takes the lease at once instead of waiting it out (2 s).
      const t0 = Date.now();
      const next = await h.cache({}, prefix).getOrLoad("row:1", async () => loaded, opts);
      expect(next.status).toBe("MISS");
      expect(Date.now() - t0).toBeLessThan(500);
    },
  );

  it("a background refresh of a STALE entry gives its lease back too", async () => {
    const prefix = `fi${Math.random().toString(36).slice(2, 8)}`;
    const reported: string[] = [];
    const cache = h.cache({ onError: (_e, op) => reported.push(op) }, prefix);
    const opts = { ...noEarly, ttl: 1, staleTtl: 60_000, jitter: 0 };
    await cache.set("k", { n: 1 }, opts);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const stale = await cache.getOrLoad("k", async () => ({ n: 2n }), opts);
    expect(stale.status).toBe("STALE");
    await cache.settle();
    expect(reported).toEqual(["fill input"]);
    expect((await cache.inspect("k")).leasePttl).toBe(-2);
  });
});
