/**
 * What the gateway emulates of Upstash beyond the wire format, per request: shebang flags and
 * key declaration (scripts.ts), read/write classification (command-info.ts), and, with a
 * Global topology (topology.ts), routing to the primary or the replica, latencies and
 * `upstash-sync-token` read-your-writes. server.ts calls `plan`, `enter`, `count` and
 * `syncToken` around running the commands; the counters go out on `/__gateway/stats`.
 *
 * @example
 * const emulation = await Emulation.start({ strictKeys: true, primaryUrl: "redis://127.0.0.1:6379" });
 * const plan = await emulation.plan(commands, false, redis);
 * const target = await emulation.enter(plan, req.headers["upstash-sync-token"], counters);
 */
import type { Redis } from "ioredis";
import { type CallKind, CommandInfo } from "./command-info";
import { isScriptCall, type Rewritten, ScriptRegistry } from "./scripts";
import { type GlobalOptions, GlobalTopology } from "./topology";

type Command = [name: string, ...args: string[]];

export type Target = "primary" | "replica";

/** Per-token counters of what Upstash would have done with the calls. */
export interface EmulationCounters {
  /** Script runs by lock: Upstash runs a script under the global lock unless it is flagged
   * `allow-key-locking` and not inside MULTI/EXEC. NOSCRIPT misses did not run. */
  scripts: { globalLock: number; keyLocked: number };
  /** Commands by kind: readOnly = read-only commands, *_RO scripts and plain EVAL/EVALSHA of a
   * `no-writes` script; writing = commands that write and other EVAL/EVALSHA; other = neither
   * (PING, PUBLISH, SCRIPT LOAD…). Counting is not routing: see `countedKind`. */
  calls: { readOnly: number; writing: number; other: number };
  /** Requests by the server that answered them (all "primary" without a Global topology). */
  served: { primary: number; replica: number };
  /** Reads that carried a sync token the replica had not reached yet, and how long they waited. */
  syncWaits: { count: number; timeouts: number; totalMs: number };
}

export function freshEmulationCounters(): EmulationCounters {
  return {
    scripts: { globalLock: 0, keyLocked: 0 },
    calls: { readOnly: 0, writing: 0, other: 0 },
    served: { primary: 0, replica: 0 },
    syncWaits: { count: 0, timeouts: 0, totalMs: 0 },
  };
}

export interface EmulationOptions {
  /** Fail `allow-key-locking` scripts that touch a key outside KEYS. Default true. */
  strictKeys?: boolean;
  /** Log to the redis-server log what unflagged scripts would violate if flagged. Default false. */
  auditKeys?: boolean;
  primaryUrl: string;
  /** A Global topology (primary + read replica); omitted = one regional database. */
  global?: GlobalOptions;
}

export interface Plan {
  commands: Command[];
  rewritten: Rewritten[];
  /** How each call is counted in `calls` (`countedKind`); `target` is chosen by command name. */
  kinds: CallKind[];
  atomic: boolean;
  target: Target;
}

/** A read whose sync token the replica did not reach in time (the server answers 503). */
export class SyncTimeout extends Error {
  constructor(
    readonly token: number,
    readonly waitedMs: number,
  ) {
    super(
      `Read replica has not caught up with upstash-sync-token ${token} after ${waitedMs} ms; retry, or raise syncTimeoutMs if replication is this slow`,
    );
  }
}

function parseToken(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How a call is counted, which is not always where it is served. A plain `EVAL`/`EVALSHA` of
 * a script whose shebang says `no-writes` cannot write (Redis refuses any write command in it:
 * "Write commands are not allowed from read-only scripts"), so it counts as read-only. It is
 * still routed by its command name, to the primary: Upstash names the `*_RO` forms as the
 * declaration that lets a call be served on replicas ("Declaring the read-only intent lets the
 * server serve the call on replicas", https://upstash.com/docs/redis/commands/scripting/eval-ro,
 * and likewise https://upstash.com/docs/redis/commands/scripting/evalsha-ro), while
 * https://upstash.com/docs/redis/commands/scripting/eval says nothing of replicas. An
 * `EVALSHA` of a SHA the gateway never saw stays "write": its flags are unknown.
 */
function countedKind(
  kind: CallKind,
  command: Command | undefined,
  rewritten: Rewritten | undefined,
): CallKind {
  const name = command?.[0];
  if (kind !== "write" || (name !== "EVAL" && name !== "EVALSHA")) return kind;
  const script = rewritten?.script;
  return script && script !== "unknown" && script.noWrites ? "read" : kind;
}

export class Emulation {
  private commandInfo?: Promise<CommandInfo>;
  /** Rewritten scripts known to be in each server's cache (Redis's cache is per server). */
  private readonly loaded: Record<Target, Set<string>> = { primary: new Set(), replica: new Set() };

  private constructor(
    private readonly scripts: ScriptRegistry,
    readonly topology: GlobalTopology | undefined,
  ) {}

  static async start(opts: EmulationOptions): Promise<Emulation> {
    const topology = opts.global
      ? await GlobalTopology.start(opts.primaryUrl, opts.global)
      : undefined;
    const registry = new ScriptRegistry(opts.strictKeys ?? true, opts.auditKeys ?? false);
    return new Emulation(registry, topology);
  }

  /** Rewrites scripts and picks the server. `redis` (the primary) answers `COMMAND` once. */
  async plan(commands: Command[], atomic: boolean, redis: Redis): Promise<Plan> {
    if (!this.commandInfo) {
      this.commandInfo = CommandInfo.load(redis);
      this.commandInfo.catch(() => {
        this.commandInfo = undefined;
      });
    }
    const info = await this.commandInfo;
    const rewritten = commands.map((c) => this.scripts.rewrite(c));
    const routed = commands.map((c) => info.kind(c));
    // A transaction or a batch with any write goes to the primary as a whole, in order.
    const allReads = routed.every((k) => k === "read");
    const target: Target = this.topology && !atomic && allReads ? "replica" : "primary";
    const kinds = routed.map((kind, i) => countedKind(kind, commands[i], rewritten[i]));
    return { commands: rewritten.map((r) => r.command), rewritten, kinds, atomic, target };
  }

  /**
   * Applies the target's latency and, for a replica read carrying a sync token, waits until
   * the replica has applied it. Throws SyncTimeout when it does not in `syncTimeoutMs`.
   */
  async enter(
    plan: Plan,
    tokenHeader: string | string[] | undefined,
    counters: EmulationCounters,
  ): Promise<void> {
    counters.served[plan.target] += 1;
    for (const kind of plan.kinds) {
      if (kind === "read") counters.calls.readOnly += 1;
      else if (kind === "write") counters.calls.writing += 1;
      else counters.calls.other += 1;
    }
    const topology = this.topology;
    if (!topology) return;
    const { primaryLatencyMs, replicaLatencyMs, syncTimeoutMs } = topology.options;
    const latency = plan.target === "replica" ? replicaLatencyMs : primaryLatencyMs;
    if (latency > 0) await sleep(latency);
    const token = parseToken(tokenHeader);
    if (plan.target !== "replica" || token === undefined) return;
    const started = Date.now();
    if (await topology.waitForOffset(token, 0)) return;
    counters.syncWaits.count += 1;
    const caughtUp = await topology.waitForOffset(token, syncTimeoutMs);
    const waited = Date.now() - started;
    counters.syncWaits.totalMs += waited;
    if (!caughtUp) {
      counters.syncWaits.timeouts += 1;
      throw new SyncTimeout(token, waited);
    }
  }

  /**
   * Upstash has one script cache per database; here primary and replica each have their own.
   * Before an EVALSHA* of a script the gateway has seen, load it on the target server once, so
   * `SCRIPT LOAD` (sent to the primary) followed by `EVALSHA_RO` (served by the replica) works
   * as on Upstash. A script flushed behind the gateway's back still answers NOSCRIPT.
   */
  async ensureLoaded(plan: Plan, redis: Redis): Promise<void> {
    const loaded = this.loaded[plan.target];
    for (const [i, r] of plan.rewritten.entries()) {
      const name = plan.commands[i]?.[0] ?? "";
      if (!r.script || r.script === "unknown" || !isScriptCall(name)) continue;
      if (loaded.has(r.script.translatedSha)) continue;
      // EVAL* loads the script as it runs; only EVALSHA* needs it there beforehand.
      if (name.startsWith("EVALSHA")) {
        try {
          await redis.call("SCRIPT", "LOAD", r.script.translated);
        } catch (error) {
          // A script Redis refuses (a syntax error) stays unloaded: EVALSHA says NOSCRIPT.
          if (error instanceof Error && error.name === "ReplyError") continue;
          throw error;
        }
      }
      loaded.add(r.script.translatedSha);
    }
    if (plan.commands.some(([n, sub]) => n === "SCRIPT" && sub?.toUpperCase() === "FLUSH")) {
      this.loaded.primary.clear();
      this.loaded.replica.clear();
    }
  }

  /** Counts the scripts that ran (a NOSCRIPT reply means Redis did not run it). */
  count(plan: Plan, errors: (string | undefined)[], counters: EmulationCounters): void {
    plan.rewritten.forEach((r, i) => {
      if (!r.script || !isScriptCall(plan.commands[i]?.[0] ?? "")) return;
      if (errors[i]?.startsWith("NOSCRIPT")) return;
      // Upstash: "A script queued inside a MULTI/EXEC transaction always runs under the
      // global lock, even when it sets allow-key-locking."
      const keyLocked = r.script !== "unknown" && r.script.keyLocked && !plan.atomic;
      if (keyLocked) counters.scripts.keyLocked += 1;
      else counters.scripts.globalLock += 1;
    });
  }

  /** Maps replies the client must see differently (SCRIPT LOAD answers the original SHA). */
  mapReply(plan: Plan, index: number, reply: unknown): unknown {
    const map = plan.rewritten[index]?.mapReply;
    return map ? map(reply) : reply;
  }

  /**
   * The `upstash-sync-token` to answer with, or undefined without a topology (the caller
   * keeps its own counter). After a write: the primary's offset, read on the connection that
   * just ran it. After a replica read: at least what the client sent, so it keeps its token.
   */
  async syncToken(
    plan: Plan,
    primary: Redis,
    tokenHeader: string | string[] | undefined,
  ): Promise<string | undefined> {
    const topology = this.topology;
    if (!topology) return undefined;
    if (plan.target === "primary") return String(await topology.primaryOffset(primary));
    return String(topology.readToken(parseToken(tokenHeader)));
  }

  async close(): Promise<void> {
    await this.topology?.close();
  }
}
