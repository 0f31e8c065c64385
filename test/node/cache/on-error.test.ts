import { describe, expect, it } from "vitest";
import type { ScriptClient } from "../../../src/cache/redis";
import { fillScript } from "../../../src/cache/scripts";
import { type CacheHarness, sleep, useWarmHarness } from "./harness";

/**
 * `onError` is a reporting hook: whatever it does, a cache fault stays swallowed. A hook that
 * throws (a logger failing, Sentry not initialised) must not fail the request, nor leave an
 * unhandled rejection behind background work run without `waitUntil`. Against real Redis
 * through the gateway.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const pfx = () => `oe${Math.random().toString(36).slice(2, 8)}`;
const throwing = () => {
  throw new Error("logger exploded");
};

describe("an onError that throws", () => {
  it("Redis down: getOrLoad still answers the loader's value as BYPASS", async () => {
    const cache = h.cache({ onError: throwing }, pfx());
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    try {
      const outcome = await cache.getOrLoad("k", async () => 42, noEarly);
      expect(outcome).toMatchObject({ status: "BYPASS", value: 42 });
    } finally {
      await h.clearFaults();
    }
  });

  it("a failed fill (no waitUntil): the loaded value is still answered as MISS", async () => {
    const client: ScriptClient = {
      evalsha: async (sha, keys, args) => {
        if (sha === fillScript.sha1) throw new Error("ECONNRESET on fill");
        return h.redis.evalsha(sha, keys, args as string[]);
      },
      eval: (s, k, a) => h.redis.eval(s, k, a as string[]),
    };
    const cache = h.cache({ redis: client, onError: throwing }, pfx());
    const outcome = await cache.getOrLoad("k", async () => 42, noEarly);
    expect(outcome).toMatchObject({ status: "MISS", value: 42 });
  });

  it("a failing STALE refresh without waitUntil: no unhandled rejection, settle() resolves", async () => {
    const unhandled: unknown[] = [];
    const listener = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", listener);
    try {
      const prefix = pfx();
      const opts = { ...noEarly, ttl: 1, staleTtl: 60_000, jitter: 0 };
      await h.cache({}, prefix).set("k", "old", opts);
      await sleep(10);
      const cache = h.cache({ onError: throwing }, prefix);
      const stale = await cache.getOrLoad(
        "k",
        async () => {
          throw new Error("db down");
        },
        opts,
      );
      expect(stale.status).toBe("STALE");
      await expect(cache.settle()).resolves.toBeUndefined();
      await sleep(50); // an unhandled rejection is reported on a later turn
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", listener);
    }
  });
});
