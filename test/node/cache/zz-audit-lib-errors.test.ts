import { describe, expect, it } from "vitest";
import { CacheWriteError, FlightRegistry, KnownEntries } from "../../../src/cache";
import type { ScriptClient } from "../../../src/cache/redis";
import { fillScript } from "../../../src/cache/scripts";
import { type CacheHarness, sleep, useWarmHarness } from "./harness";

/** Audit probes: error paths of the engine as a library. */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});
const noEarly = { earlyRefresh: false } as const;
const pfx = () => `ae${Math.random().toString(36).slice(2, 8)}`;

describe("onError that throws", () => {
  it("Redis down + onError throws: getOrLoad still answers BYPASS (onError is a report hook)", async () => {
    const cache = h.cache(
      {
        onError: () => {
          throw new Error("logger exploded");
        },
      },
      pfx(),
    );
    await h.faults({ failRate: 1, failMode: "status", failStatus: 503 });
    let outcome: unknown;
    try {
      outcome = await cache.getOrLoad("k", async () => 42, noEarly).catch((e: unknown) => e);
    } finally {
      await h.clearFaults();
    }
    console.log("onError throws, redis down ->", outcome);
    expect(outcome).toMatchObject({ status: "BYPASS", value: 42 });
  });

  it("fill fails + onError throws (no waitUntil): the loaded value is still returned", async () => {
    let failFill = true;
    const client: ScriptClient = {
      evalsha: async (sha, keys, args) => {
        if (sha === fillScript.sha1 && failFill) throw new Error("ECONNRESET on fill");
        return h.redis.evalsha(sha, keys, args as string[]);
      },
      eval: (s, k, a) => h.redis.eval(s, k, a as string[]),
    };
    const cache = h.cache(
      {
        redis: client,
        onError: () => {
          throw new Error("logger exploded");
        },
      },
      pfx(),
    );
    const outcome = await cache.getOrLoad("k", async () => 42, noEarly).catch((e: unknown) => e);
    failFill = false;
    console.log("fill fails + onError throws ->", outcome);
    expect(outcome).toMatchObject({ status: "MISS", value: 42 });
  });
});

describe("a fill that fails holds the key for leaseTtl", () => {
  it("fill refused by Redis (e.g. Upstash 'max request size exceeded'): the next reader is not stalled", async () => {
    const prefix = pfx();
    let failFill = true;
    const client: ScriptClient = {
      evalsha: async (sha, keys, args) => {
        if (sha === fillScript.sha1 && failFill) {
          failFill = false;
          throw new Error("ERR max request size exceeded");
        }
        return h.redis.evalsha(sha, keys, args as string[]);
      },
      eval: (s, k, a) => h.redis.eval(s, k, a as string[]),
    };
    const a = h.cache({ redis: client }, prefix);
    await a.getOrLoad("k", async () => 1, noEarly);
    const t0 = Date.now();
    const b = await h.cache({}, prefix).getOrLoad("k", async () => 1, noEarly);
    const took = Date.now() - t0;
    console.log("after failed fill: next reader", b.status, took, "ms");
    expect(took).toBeLessThan(500);
  });

  it("tagsOf returning an invalid tag name (a space): the second reader is not stalled", async () => {
    const prefix = pfx();
    const errors: string[] = [];
    const opts = {
      ...noEarly,
      tagsOf: (p: { brand: string }) => [`brand:${p.brand}`],
    };
    const a = h.cache({ onError: (e, op) => errors.push(`${op}: ${String(e)}`) }, prefix);
    const first = await a.getOrLoad("p:1", async () => ({ brand: "Acme Corp" }), opts);
    const t0 = Date.now();
    const second = await h.cache({}, prefix).getOrLoad("p:1", async () => ({ brand: "Acme Corp" }), opts);
    const took = Date.now() - t0;
    console.log("tagsOf invalid:", first.status, errors, "second:", second.status, took, "ms");
    expect(took).toBeLessThan(500);
  });

  it("versionOf returning undefined (a missing column): the error is surfaced, not only to onError", async () => {
    const prefix = pfx();
    const errors: string[] = [];
    const opts = {
      ...noEarly,
      versionKey: "p:2",
      versionOf: (p: { version?: number }) => p.version as number,
    };
    const a = h.cache({ onError: (e, op) => errors.push(`${op}: ${String(e)}`) }, prefix);
    const first = await a.getOrLoad("p:2", async () => ({ ver: 3 }), opts).catch((e: unknown) => e);
    console.log("versionOf undefined:", first, errors);
    const t0 = Date.now();
    const second = await h.cache({}, prefix).getOrLoad("p:2", async () => ({ ver: 3 }), opts).catch((e: unknown) => e);
    console.log("second:", (second as { status?: string }).status, Date.now() - t0, "ms");
    expect(first).toBeInstanceOf(Error);
  });

  it("large value (33 MiB, beyond the gateway's 32 MiB and Upstash's 10 MB): getOrLoad answers, next reader not stalled", async () => {
    const prefix = pfx();
    const errors: string[] = [];
    const big = "x".repeat(33 * 1024 * 1024);
    const a = h.cache({ onError: (e, op) => errors.push(`${op}: ${String(e).slice(0, 200)}`) }, prefix);
    const first = await a.getOrLoad("big", async () => big, noEarly);
    console.log("33MiB:", first.status, errors);
    const t0 = Date.now();
    const second = await h.cache({}, prefix).getOrLoad("big", async () => "small", noEarly);
    const took = Date.now() - t0;
    console.log("33MiB next reader:", second.status, took, "ms");
    expect(took).toBeLessThan(500);
  }, 60_000);

  it("large value via set(): error says it is too large, not CacheWriteError (outbox retry can never succeed)", async () => {
    const cache = h.cache({}, pfx());
    const big = "x".repeat(33 * 1024 * 1024);
    const err = await cache.set("big", big).catch((e: unknown) => e);
    console.log("set 33MiB ->", String(err).slice(0, 300));
    expect(err).not.toBeInstanceOf(CacheWriteError);
  }, 60_000);
});

describe("loader failures", () => {
  it.each([
    ["a string", "boom"],
    ["undefined", undefined],
    ["null", null],
    ["a plain object", { code: "E1" }],
  ])("loader throws %s: caller gets exactly it, the lease is released", async (_, thrown) => {
    const prefix = pfx();
    const cache = h.cache({}, prefix);
    let caught: unknown = "nothing";
    try {
      await cache.getOrLoad("k", async () => {
        throw thrown;
      }, noEarly);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBe(thrown);
    const t0 = Date.now();
    const next = await h.cache({}, prefix).getOrLoad("k", async () => 1, noEarly);
    expect(next.status).toBe("MISS");
    expect(Date.now() - t0).toBeLessThan(300);
  });

  it("loader throws undefined with coalesced followers and loaderBackoff: followers get it", async () => {
    const prefix = pfx();
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    const one = () => h.cache({ flights, known }, prefix);
    const loader = async () => {
      await sleep(50);
      throw undefined;
    };
    const opts = { ...noEarly, loaderBackoff: 1000 };
    const results = await Promise.allSettled([
      one().getOrLoad("k", loader, opts),
      one().getOrLoad("k", loader, opts),
    ]);
    console.log("throw undefined:", results);
    const third = await one().getOrLoad("k", loader, opts).catch((e: unknown) => e);
    console.log("within backoff:", third);
    expect(results.every((r) => r.status === "rejected")).toBe(true);
  });

  it("a hung loader: getOrLoad settles within leaseTtl + waitBudget", async () => {
    const cache = h.cache({}, pfx());
    const hung = cache.getOrLoad("k", () => new Promise<number>(() => {}), {
      ...noEarly,
      leaseTtl: 200,
      waitBudget: 300,
    });
    const outcome = await Promise.race([
      hung.then(
        () => "settled",
        () => "rejected",
      ),
      sleep(1500).then(() => "still pending after 1.5 s"),
    ]);
    expect(outcome).not.toBe("still pending after 1.5 s");
  });

  it("a hung loader: followers in the isolate take over, and each starts another hung load", async () => {
    const prefix = pfx();
    const flights = new FlightRegistry();
    const known = new KnownEntries();
    let calls = 0;
    const loader = () => {
      calls++;
      return new Promise<number>(() => {});
    };
    const opts = { ...noEarly, leaseTtl: 200, waitBudget: 5000 };
    for (let i = 0; i < 5; i++) {
      void h.cache({ flights, known }, prefix).getOrLoad("k", loader, opts);
    }
    await sleep(1500);
    console.log("hung loader: loader calls after 1.5 s with 5 callers:", calls);
    expect(calls).toBeGreaterThanOrEqual(1);
  });
});
