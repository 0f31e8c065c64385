import { describe, expect, it } from "vitest";
import { CacheWriteError, FlightRegistry, KnownEntries } from "../../../src/cache";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * Redis refusing a fill or a write (found by a library audit). The refusal here is Upstash's
 * own: a request over 10 MB answers "ERR max request size exceeded" (the gateway enforces it
 * as Upstash does). Before: the refused fill kept its lease until leaseTtl, so every later read
 * of the key waited it out (~2 s), then loaded and was refused again; and the client's error
 * quoted the whole command, value included, into onError, CacheWriteError and the logs.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

/** A value whose fill is over Upstash's 10 MB request limit. */
const huge = () => ({ blob: "x".repeat(10.5 * 1024 * 1024) });

describe("a fill Redis refuses", () => {
  it("gives its lease back at once: the next read loads without waiting leaseTtl", async () => {
    const errors: unknown[] = [];
    const prefix = `rf${Date.now().toString(36)}`;
    const engine = () =>
      h.cache(
        {
          flights: new FlightRegistry(),
          known: new KnownEntries(),
          onError: (e) => errors.push(e),
        },
        prefix,
      );
    let loads = 0;
    const load = async () => {
      loads++;
      return huge();
    };
    const first = await engine().getOrLoad("big", load, { leaseTtl: 5_000 });
    expect(first.status).toBe("MISS");
    expect(first.value.blob.length).toBe(huge().blob.length);
    // The fill ran inline (no waitUntil) and was refused: reported, value still answered.
    expect(errors.length).toBeGreaterThanOrEqual(1);
    // A lease kept until leaseTtl (5 s here) would make this read wait for it; given back, the
    // read takes the lease at once and loads.
    const started = Date.now();
    const second = await engine().getOrLoad("big", load, { leaseTtl: 5_000 });
    expect(second.status).toBe("MISS");
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(loads).toBe(2);
    expect(await h.redis.exists(`${prefix}:l:big`)).toBe(0);
  }, 20_000);

  it("reports an error whose message does not carry the value", async () => {
    const errors: unknown[] = [];
    const prefix = `rm${Date.now().toString(36)}`;
    const cache = h.cache({ onError: (e) => errors.push(e) }, prefix);
    await cache.getOrLoad("big", async () => huge());
    const reported = errors[0] as Error;
    expect(reported.message).toContain("max request size exceeded");
    expect(reported.message).toContain(`${prefix}:e:big`); // the keys stay, for the operator
    expect(reported.message.length).toBeLessThan(1_000);
    expect(reported.stack?.length ?? 0).toBeLessThan(5_000);

    const write = await cache.writeThrough("big2", huge(), 1).catch((e: unknown) => e);
    expect(write).toBeInstanceOf(CacheWriteError);
    expect((write as Error).message).toContain("max request size exceeded");
    expect((write as Error).message.length).toBeLessThan(1_000);
    expect(((write as CacheWriteError).cause as Error).message.length).toBeLessThan(1_000);
    expect(JSON.stringify((write as Error).message)).not.toContain("xxxxxxxxxx");
  }, 20_000);
});
