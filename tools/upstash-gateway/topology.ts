/**
 * An Upstash Global database in miniature: a primary redis-server and one read replica that
 * replicates through a link holding the replication stream back by `replicationLagMs`.
 *
 * Upstash sends writes to the primary region and serves reads from the nearest read region;
 * each response carries `upstash-sync-token`, and a read that sends one back is served only
 * once the replica has synced up to it (https://upstash.com/docs/redis/howto/readyourwrites).
 * Here the token is the primary's replication offset (`master_repl_offset`) after the write,
 * and "synced up" is the replica's own `slave_repl_offset` reaching it. The lag is real
 * replication lag: the bytes of the stream wait in the link, they are not faked at read time.
 *
 * @example
 * const topology = await GlobalTopology.start({
 *   primaryUrl: "redis://127.0.0.1:7001", replicaUrl: "redis://127.0.0.1:7002", replicationLagMs: 50,
 * });
 * await topology.waitForOffset(1234, 5000); // true once the replica has applied offset 1234
 * await topology.close();
 */

import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { Redis } from "ioredis";

export interface GlobalOptions {
  /** The read replica's server. The gateway makes it `REPLICAOF` the primary through the lag link. */
  replicaUrl: string;
  /** Extra delay of the replication stream, primary -> replica. Default 0. */
  replicationLagMs?: number;
  /** Added before every request served by the primary. Default 0. */
  primaryLatencyMs?: number;
  /** Added before every request served by the replica. Default 0. */
  replicaLatencyMs?: number;
  /** How long a read carrying a sync token may wait for the replica; then 503. Default 5000. */
  syncTimeoutMs?: number;
}

const POLL_MS = 2;
const LINK_UP_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads `field:value` out of an INFO section. */
export function infoField(info: string, field: string): string | undefined {
  const match = new RegExp(`^${field}:(.*)$`, "m").exec(info);
  return match?.[1]?.trim();
}

/**
 * A TCP relay the replica uses as its master: bytes from the primary are written on only
 * `lagMs` after they arrived (in order); the replica's ACKs and PSYNC go through at once.
 */
export class LagLink {
  /** Read per chunk, so a change applies to bytes arriving from then on. */
  lagMs = 0;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((replica) => this.relay(replica));
  }

  static async start(target: { host: string; port: number }): Promise<LagLink> {
    const link = new LagLink(target);
    await new Promise<void>((resolve, reject) => {
      link.server.once("error", reject);
      link.server.listen(0, "127.0.0.1", () => resolve());
    });
    return link;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private relay(replica: Socket): void {
    const primary = tcpConnect(this.target.port, this.target.host);
    this.sockets.add(replica).add(primary);
    const closeBoth = () => {
      replica.destroy();
      primary.destroy();
      this.sockets.delete(replica);
      this.sockets.delete(primary);
    };
    replica.on("data", (chunk) => primary.write(chunk));
    // Each chunk is due `lagMs` after it arrived, and never before the one ahead of it, so the
    // stream stays in order even when the lag changes.
    let lastDue = 0;
    primary.on("data", (chunk) => {
      const due = Math.max(Date.now() + this.lagMs, lastDue);
      lastDue = due;
      const delay = due - Date.now();
      if (delay <= 0) replica.write(chunk);
      else setTimeout(() => replica.writable && replica.write(chunk), delay);
    });
    replica.on("error", closeBoth).on("close", closeBoth);
    // Bytes still held in the link are delivered before the replica sees the primary go.
    primary.on("error", closeBoth).on("close", () => setTimeout(closeBoth, this.lagMs));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The primary/replica pair: sets up replication, reads offsets, waits for the replica. */
export class GlobalTopology {
  /** The highest offset handed out as a sync token; tokens above it were not ours. */
  private highestIssued = 0;
  /** The replica's offset as last seen: answered to reads without a token at no cost. */
  private lastReplicaOffset = 0;

  private constructor(
    readonly options: Required<GlobalOptions>,
    private readonly link: LagLink,
    private readonly primaryAdmin: Redis,
    private readonly replicaAdmin: Redis,
  ) {}

  static async start(primaryUrl: string, options: GlobalOptions): Promise<GlobalTopology> {
    const full: Required<GlobalOptions> = {
      replicationLagMs: 0,
      primaryLatencyMs: 0,
      replicaLatencyMs: 0,
      syncTimeoutMs: 5000,
      ...options,
    };
    const primaryUrlParsed = new URL(primaryUrl);
    const admin = (url: string) => {
      const redis = new Redis(url, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        connectionName: "gateway-admin",
      });
      redis.on("error", () => undefined); // failures surface on the commands that need them
      return redis;
    };
    const primaryAdmin = admin(primaryUrl);
    const replicaAdmin = admin(full.replicaUrl);
    let link: LagLink | undefined;
    try {
      await Promise.all([primaryAdmin.connect(), replicaAdmin.connect()]);
      const runId = async (r: Redis) => infoField(String(await r.info("server")), "run_id");
      if ((await runId(primaryAdmin)) === (await runId(replicaAdmin))) {
        throw new Error(
          "The replica URL names the primary's own redis-server; give it another one",
        );
      }
      link = await LagLink.start({
        host: primaryUrlParsed.hostname,
        port: Number(primaryUrlParsed.port || 6379),
      });
      const topology = new GlobalTopology(full, link, primaryAdmin, replicaAdmin);
      await replicaAdmin.call("REPLICAOF", "127.0.0.1", String(link.port));
      // The handshake and initial sync run without the lag (a dozen round trips would each
      // pay it); the lag applies to the replication stream from then on.
      await topology.waitForLinkUp();
      link.lagMs = full.replicationLagMs;
      return topology;
    } catch (error) {
      await link?.close();
      primaryAdmin.disconnect();
      replicaAdmin.disconnect();
      throw error;
    }
  }

  private async waitForLinkUp(): Promise<void> {
    const deadline = Date.now() + LINK_UP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const info = String(await this.replicaAdmin.info("replication"));
      const offset = Number(infoField(info, "slave_repl_offset") ?? -1);
      if (infoField(info, "master_link_status") === "up" && offset >= 0) {
        this.lastReplicaOffset = offset;
        return;
      }
      await sleep(20);
    }
    throw new Error(
      "The replica did not finish its initial sync with the primary within the deadline; check both redis-servers are running",
    );
  }

  /** Changes the replication lag from now on (e.g. between benchmark phases). */
  setReplicationLag(ms: number): void {
    this.link.lagMs = ms;
    this.options.replicationLagMs = ms;
  }

  /** The primary's replication offset now: the sync token for a write just done. */
  async primaryOffset(primary: Redis): Promise<number> {
    const info = String(await primary.info("replication"));
    const offset = Number(infoField(info, "master_repl_offset") ?? 0);
    if (offset > this.highestIssued) this.highestIssued = offset;
    return offset;
  }

  async replicaOffset(): Promise<number> {
    const info = String(await this.replicaAdmin.info("replication"));
    const offset = Number(infoField(info, "slave_repl_offset") ?? 0);
    if (offset > this.lastReplicaOffset) this.lastReplicaOffset = offset;
    return offset;
  }

  /** The token a read answers with: what the client sent, or what the replica is known to hold. */
  readToken(requested: number | undefined): number {
    return Math.max(requested ?? 0, this.lastReplicaOffset);
  }

  /**
   * Waits until the replica has applied `offset`. A token above anything this gateway handed
   * out (another gateway's, or one from before a restart) is capped: it cannot name a write
   * the primary has not done. Returns false on timeout.
   */
  async waitForOffset(offset: number, timeoutMs: number): Promise<boolean> {
    const target = Math.min(offset, this.highestIssued);
    if (this.lastReplicaOffset >= target) return true;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.replicaOffset()) >= target) return true;
      if (Date.now() >= deadline) return false;
      await sleep(POLL_MS);
    }
  }

  async close(): Promise<void> {
    // Leave the replica a standalone server rather than retrying a link that is gone.
    await this.replicaAdmin.call("REPLICAOF", "NO", "ONE").catch(() => undefined);
    await this.link.close();
    await Promise.all([
      this.primaryAdmin.quit().catch(() => undefined),
      this.replicaAdmin.quit().catch(() => undefined),
    ]);
  }
}
