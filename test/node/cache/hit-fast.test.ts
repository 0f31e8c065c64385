import { describe, expect, it } from "vitest";
import { keySpace } from "../../../src/cache/keys";
import { acquire } from "../../../src/cache/read/acquire";
import { readHit } from "../../../src/cache/read/hit";
import { declaredTags, KnownEntries } from "../../../src/cache/read/known";
import type { ReadReply } from "../../../src/cache/read/reply";
import { type CacheHarness, useWarmHarness } from "./harness";

/**
 * hit.lua answers the common case (a fresh entry whose version is current and whose tags are
 * exactly the declared ones, counters unchanged) on a short path before its general one. These
 * pin that the short path answers exactly what the general path and acquire.lua (cjson-built)
 * answer, and that everything it must not serve falls through to the general path's verdict.
 * Declaring other tag names than the entry's stored list (another tag, or the same in another
 * order) sends the same entry down the general path, which is how the two are compared.
 */
let h: CacheHarness;
useWarmHarness((started) => {
  h = started;
});

const fresh = () => `hf${Math.random().toString(36).slice(2, 10)}`;
const versioned = { versionKey: "p", versionOf: (r: { version: number }) => r.version };

/** The reply without its `now` (each read has its own), and `now` itself. */
function split(reply: ReadReply): { now: number; rest: Record<string, unknown> } {
  const { now, ...rest } = reply as ReadReply & { now: number };
  return { now, rest };
}

/** A change to the filled entry "p", and the verdict the hit script must then give. */
interface Verdict {
  name: string;
  change: () => Promise<unknown>;
  s: string;
  r?: string;
}

/** For each case: fill "p" afresh, apply the change, read, and check the verdict. */
async function expectVerdicts(
  cases: Verdict[],
  fill: () => Promise<unknown>,
  read: () => Promise<ReadReply>,
): Promise<void> {
  for (const c of cases) {
    await fill();
    await c.change();
    const reply = await read();
    expect(reply.s, c.name).toBe(c.s);
    expect((reply as { r?: string }).r, c.name).toBe(c.r);
  }
}

/** A fresh prefix: its key layout, where reads go, an engine on it and the entry "p". */
function space() {
  const prefix = fresh();
  const keys = keySpace(prefix);
  return {
    keys,
    target: { redis: h.redis, keys },
    cache: h.cache({}, prefix),
    entry: keys.entry("p"),
  };
}

describe("hit.lua's short path for a fresh, untagged entry", () => {
  it("answers what the general path and acquire.lua answer, field for field", async () => {
    const { target, cache, entry } = space();
    const fill = async () => {
      await h.redis.del(entry);
      await cache.getOrLoad("p", async () => ({ version: 4, name: 'q " \\ é' }), {
        ...versioned,
        earlyRefresh: false,
      });
    };
    // Each variant of the stored fields, as fill.lua writes them and as something else might.
    const variants: [string, Record<string, string> | string[]][] = [
      ["as filled", {}],
      ["no load time, no ct", ["lt", "ct"]],
      ["zero load time", { lt: "0", ct: "0" }],
      ["fractional load time (not digits: the general reply)", { lt: "12.5" }],
      ["a version above the key's", { ver: "9" }],
    ];
    for (const [name, change] of variants) {
      await fill();
      if (Array.isArray(change)) await h.redis.hdel(entry, ...change);
      else if (Object.keys(change).length > 0) await h.redis.hset(entry, change);
      const short = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
      const general = await readHit(target, "p", {
        versionKey: "p",
        tags: ["not-its-tag"],
        replica: false,
      });
      const viaAcquire = await acquire(target, "p", {
        versionKey: "p",
        tags: [],
        learned: [],
        token: "t",
        leaseTtl: 1000,
        early: false,
        estimateMs: 0,
      });
      expect(short.s, name).toBe("HIT");
      const a = split(short);
      const b = split(general);
      const c = split(viaAcquire);
      expect(a.rest, name).toEqual(b.rest);
      expect(a.rest, name).toEqual(c.rest);
      expect(Math.abs(a.now - b.now), name).toBeLessThan(1000);
    }
    // Unversioned: `set` writes ver "" and the short path keeps it a string.
    await cache.set("s", { plain: true }, {});
    const short = await readHit(target, "s", { tags: [], replica: false });
    const general = await readHit(target, "s", { tags: ["x"], replica: false });
    expect(short.s).toBe("HIT");
    expect(split(short).rest).toEqual(split(general).rest);
    expect((short as { ver?: unknown }).ver).toBe("");
  });

  it("falls through to the general verdict for everything it must not serve", async () => {
    const { keys, target, cache, entry } = space();
    const verKey = keys.version("p");
    const now = Date.now();
    const cases: Verdict[] = [
      {
        name: "version key bumped past the entry",
        change: () => h.redis.set(verKey, "5"),
        s: "MISS",
        r: "version",
      },
      {
        name: "version key empty (first load in flight)",
        change: () => h.redis.set(verKey, ""),
        s: "MISS",
        r: "version",
      },
      { name: "version key evicted", change: () => h.redis.del(verKey), s: "MISS", r: "version" },
      {
        name: "entry version empty",
        change: () => h.redis.hset(entry, { ver: "" }),
        s: "MISS",
        r: "version",
      },
      {
        name: "past its fresh time",
        change: () => h.redis.hset(entry, { fu: String(now - 1000) }),
        s: "STALE",
      },
      {
        name: "past its stale time, fail-safe copy kept",
        change: () => h.redis.hset(entry, { fu: String(now - 2000), su: String(now - 1000) }),
        s: "MISS",
        r: "expired",
      },
      {
        name: "tagged entry, tags not declared",
        change: () => h.redis.hset(entry, { tg: JSON.stringify({ a: "1" }) }),
        s: "MISS",
        r: "need",
      },
    ];
    await expectVerdicts(
      cases,
      async () => {
        await h.redis.del(entry, verKey);
        await cache.getOrLoad("p", async () => ({ version: 4 }), {
          ...versioned,
          earlyRefresh: false,
        });
      },
      () => readHit(target, "p", { versionKey: "p", tags: [], replica: false }),
    );
    // A negative entry at version 0 with no version key ("nothing committed yet") is served,
    // by the general path.
    await h.redis.del(entry, verKey);
    await cache.getOrLoad("p", async () => null as { version: number } | null, {
      versionKey: "p",
      versionOf: (r) => r?.version ?? 0,
      negativeTtl: 60_000,
      earlyRefresh: false,
    });
    await h.redis.del(verKey);
    expect(String(await h.redis.hget(entry, "ver"))).toBe("0"); // auto-deserialized
    const negative = await readHit(target, "p", { versionKey: "p", tags: [], replica: false });
    expect(negative.s).toBe("HIT");
    expect("v" in negative && negative.v === null).toBe(true);
  });
});

describe("hit.lua's short path for a fresh, tagged entry", () => {
  type Row = { version: number; tags: string[] };
  const own = ["products"];
  /** Own tags plus tags known only from the value (tagsOf), as the app's products have. */
  const tagged = {
    versionKey: "p",
    versionOf: (r: Row) => r.version,
    tags: own,
    tagsOf: (r: Row) => r.tags,
    earlyRefresh: false,
  };
  // Enough late tags that Lua's pairs() order (what `need` listed before) is not the stored one.
  const late = ["z:9", "c:3", "q:1", "a:7", "m:2", "x:5", "b:8", "k:4"];
  const stored = [...own, ...late];

  /** The general path's field `tg` rewritten so that the general path would refuse the entry. */
  async function spoilGeneralPath(entry: string) {
    const wrong = Object.fromEntries(stored.map((name) => [name, "1"]));
    await h.redis.hset(entry, { tg: JSON.stringify(wrong) });
  }

  it("answers what the general path and acquire.lua answer, field for field", async () => {
    const { target, cache, entry } = space();
    await cache.getOrLoad("p", async () => ({ version: 4, tags: late }), tagged);
    // fill.lua stores the names exactly as a reader declares them back.
    expect(await h.redis.hget(entry, "tk")).toEqual(stored);
    const short = await readHit(target, "p", { versionKey: "p", tags: stored, replica: false });
    const general = await readHit(target, "p", {
      versionKey: "p",
      tags: [...stored].reverse(),
      replica: false,
    });
    const viaAcquire = await acquire(target, "p", {
      versionKey: "p",
      tags: own,
      learned: late,
      token: "t",
      leaseTtl: 1000,
      early: false,
      estimateMs: 0,
    });
    expect(short.s).toBe("HIT");
    expect(split(short).rest).toEqual(split(general).rest);
    expect(split(short).rest).toEqual(split(viaAcquire).rest);
    // And it is the short path that answered `short`: with the general path's own record of
    // the snapshot spoiled, the stored order still serves, another order is refused.
    await spoilGeneralPath(entry);
    const probe = await readHit(target, "p", { versionKey: "p", tags: stored, replica: false });
    expect(probe.s).toBe("HIT");
    const other = await readHit(target, "p", {
      versionKey: "p",
      tags: [...stored].reverse(),
      replica: false,
    });
    expect(other).toMatchObject({ s: "MISS", r: "tag" });
  });

  it("falls through to the general verdict for everything it must not serve", async () => {
    const { keys, target, cache, entry } = space();
    const cases: Verdict[] = [
      {
        name: "a tag bumped",
        change: () => cache.invalidateTags("c:3"),
        s: "MISS",
        r: "tag",
      },
      {
        name: "a tag counter evicted",
        change: () => h.redis.del(keys.tag("products")),
        s: "MISS",
        r: "tag",
      },
      {
        name: "the version key bumped",
        change: () => h.redis.set(keys.version("p"), "5"),
        s: "MISS",
        r: "version",
      },
      {
        name: "stored before tk and tc existed",
        change: () => h.redis.hdel(entry, "tk", "tc"),
        s: "HIT",
      },
      {
        name: "a foreign tc (the general path still decides from tg)",
        change: () => h.redis.hset(entry, { tc: "1,2," }),
        s: "HIT",
      },
      {
        name: "past its fresh time",
        change: () => h.redis.hset(entry, { fu: String(Date.now() - 1000) }),
        s: "STALE",
      },
    ];
    await expectVerdicts(
      cases,
      async () => {
        await h.redis.del(entry, keys.version("p"));
        await cache.getOrLoad("p", async () => ({ version: 4, tags: late }), tagged);
      },
      () => readHit(target, "p", { versionKey: "p", tags: stored, replica: false }),
    );
  });

  it("teaches another isolate the stored order, so its next hit takes the short path", async () => {
    const { keys, cache, entry } = space();
    let loads = 0;
    const load = async () => {
      loads++;
      return { version: 4, tags: late };
    };
    await cache.getOrLoad("p", load, tagged);
    const known = new KnownEntries();
    const other = h.cache({ known }, keys.prefix);
    // Its first read declares only its own tags: the entry answers `need`, in the stored order.
    expect((await other.getOrLoad("p", load, tagged)).status).toBe("HIT");
    expect(declaredTags(own, known.tags(keys.prefix, "p"))).toEqual(stored);
    // The proof it is the short path: the general path's record spoiled, still a HIT, no load.
    await spoilGeneralPath(entry);
    const again = await other.getOrLoad("p", load, tagged);
    expect(again.status).toBe("HIT");
    expect(loads).toBe(1);
    const need = await readHit({ redis: h.redis, keys }, "p", {
      versionKey: "p",
      tags: own,
      replica: false,
    });
    expect(need).toMatchObject({ s: "MISS", r: "need", need: stored });
  });
});
