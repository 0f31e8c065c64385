import { describe, expect, it } from "vitest";
import { FlightRegistry, KnownEntries } from "../../../src/cache";
import type { ScriptClient } from "../../../src/cache/redis";
import { type CacheHarness, gate, useWarmHarness } from "./harness";

/**
 * Replica reads and strict reads of one isolate never share a flight. A replica lags: its
 * answer, handed to a strict reader that began after a write the replica had not applied yet,
 * is a stale read. The replica is emulated by a copy of the prefix's keys that the client's
 * read-only calls read, so the test decides exactly what it has applied.
 */
let h: CacheHarness;
useWarmHarness((s) => {
  h = s;
});
const noEarly = { earlyRefresh: false } as const;
const copy = (src: string, dst: string) =>
  h.redis.eval("return redis.call('COPY', KEYS[1], KEYS[2], 'REPLACE')", [src, dst], []);

/**
 * A replica reader leads a flight and sleeps on a lease the replica still shows; a write is
 * acknowledged on the primary; the replica then applies the earlier fill, not the write; a
 * strict reader begins. Returns what the strict reader got (2 is the written row).
 */
async function strictAfterLaggingReplica(syncToken?: string): Promise<number> {
  const P = `rf${Math.random().toString(36).slice(2, 8)}`;
  const R = `${P}r`; // the replica's copy of P's keys
  const firstRo = gate<void>();
  const toReplica = (keys: string[]) => keys.map((k) => k.replace(`${P}:`, `${R}:`));
  const lagging: ScriptClient = {
    evalsha: (s, k, a) => h.redis.evalsha(s, k, a),
    eval: (s, k, a) => h.redis.eval(s, k, a),
    evalshaRo: async (s, k, a) => {
      const r = await h.redis.evalshaRo(s, toReplica(k), a);
      firstRo.load();
      return r;
    },
    evalRo: async (s, k, a) => {
      const r = await h.redis.evalRo(s, toReplica(k), a);
      firstRo.load();
      return r;
    },
    ...(syncToken === undefined ? {} : { readYourWritesSyncToken: syncToken }),
  };
  let row = 1;
  const load = async () => row;
  await h.cache({}, P).getOrLoad("k", load, noEarly); // v1 on the primary
  await copy(`${P}:e:k`, `${R}:stash`);
  // The replica has not applied that fill: it still shows the lease, 60 ms announced.
  await h.redis.set(`${R}:l:k`, `x.60.${Date.now()}`, { px: 5000 });

  const isolate = { flights: new FlightRegistry(), known: new KnownEntries() };
  const replicaRequest = h.cache({ redis: lagging, ...isolate }, P);
  const strictRequest = h.cache(isolate, P);
  const leader = replicaRequest.getOrLoad("k", load, { ...noEarly, consistency: "replica" });
  await firstRo.started; // it saw the lease on the replica and sleeps on it
  row = 2;
  await h.cache({}, P).invalidate("k"); // the write, acknowledged by the primary
  await copy(`${R}:stash`, `${R}:e:k`); // the replica catches up to the fill only
  await h.redis.del(`${R}:l:k`);
  const strict = await strictRequest.getOrLoad("k", load, noEarly);
  await leader;
  return strict.value;
}

describe("replica and strict reads in one isolate", () => {
  it("a strict read never takes a replica read's answer, even from a request without a sync position", async () => {
    expect(await strictAfterLaggingReplica()).toBe(2);
  });

  it("nor from one at a sync position", async () => {
    expect(await strictAfterLaggingReplica("pos-1")).toBe(2);
  });
});
