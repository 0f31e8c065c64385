/**
 * Injected faults, per token (`POST /__gateway/faults`, see README.md): added latency and
 * jitter, optionally drawn from seeded sequences so two tokens see the same noise, and
 * failures by rate or count, answered as an HTTP status or a dropped socket.
 */
import type { ServerResponse } from "node:http";
import { prng } from "../../db/prng";
import { HttpError, type Json, sendJson } from "./http";
import type { Command } from "./request";

export interface Faults {
  latencyMs: number;
  jitterMs: number;
  failRate: number;
  failMode: "status" | "drop";
  failStatus: number;
  /**
   * The error text a failed request answers (`{"error": …}`), e.g. one of Upstash's own:
   * "ERR max daily request limit exceeded". Default: a message saying the fault was injected.
   */
  failError?: string;
  /** Remaining forced failures; undefined = use failRate instead. */
  failCount?: number;
  /**
   * Jitter drawn from sequences seeded with this (mulberry32) instead of Math.random, one
   * sequence per kind of request (`requestKind`): two tokens given the same seed see the same
   * delays, the n-th request of a kind on one waiting what the n-th of that kind waits on the
   * other (common random numbers: a benchmark comparing them is not comparing two draws of the
   * noise). Per kind, so that requests one client sends and the other does not (a background
   * stats flush) do not shift every later draw of the first onto other requests of the other.
   */
  jitterSeed?: number;
  /** The seeded sequences' generators by kind (not part of the JSON view). */
  jitterStreams?: Map<string, () => number>;
}

const FAULT_KEYS = new Set([
  "latencyMs",
  "jitterMs",
  "failRate",
  "failMode",
  "failStatus",
  "failError",
  "failCount",
  "jitterSeed",
]);

function numberField(input: Record<string, unknown>, key: string, max: number, integer: boolean) {
  const value = input[key];
  if (value === undefined) return undefined;
  const valid = typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= max;
  if (!valid || (integer && !Number.isInteger(value))) {
    const kind = integer ? "an integer" : "a number";
    throw new HttpError(400, `faults.${key} must be ${kind} between 0 and ${max}`);
  }
  return value;
}

export function parseFaults(value: unknown): Faults {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "faults body must be a JSON object");
  }
  const input = value as Record<string, unknown>;
  const unknownKey = Object.keys(input).find((k) => !FAULT_KEYS.has(k));
  if (unknownKey) throw new HttpError(400, `Unknown fault option "${unknownKey}"`);
  const failMode = input.failMode ?? "status";
  if (failMode !== "status" && failMode !== "drop") {
    throw new HttpError(400, `faults.failMode must be "status" or "drop"`);
  }
  const failStatus = numberField(input, "failStatus", 599, true) ?? 503;
  if (failStatus < 400) throw new HttpError(400, "faults.failStatus must be between 400 and 599");
  const failError = input.failError;
  if (failError !== undefined && (typeof failError !== "string" || failError.length > 1000)) {
    throw new HttpError(400, "faults.failError must be a string of at most 1000 characters");
  }
  return {
    latencyMs: numberField(input, "latencyMs", 60_000, false) ?? 0,
    jitterMs: numberField(input, "jitterMs", 60_000, false) ?? 0,
    failRate: numberField(input, "failRate", 1, false) ?? 0,
    failMode,
    failStatus,
    ...(failError === undefined ? {} : { failError }),
    failCount: numberField(input, "failCount", Number.MAX_SAFE_INTEGER, true),
    ...seededJitter(numberField(input, "jitterSeed", 0xffffffff, true)),
  };
}

function seededJitter(seed: number | undefined): Pick<Faults, "jitterSeed" | "jitterStreams"> {
  return seed === undefined ? {} : { jitterSeed: seed, jitterStreams: new Map() };
}

const MAX_JITTER_KINDS = 256;

/** A draw in [0, 1) for a request of `kind`: from its seeded sequence, else Math.random. */
function jitterDraw(faults: Faults, kind: string): number {
  const streams = faults.jitterStreams;
  if (faults.jitterSeed === undefined || !streams) return Math.random();
  // Bounded: past MAX_JITTER_KINDS distinct kinds (random script SHAs, say), the rest share one.
  const stream = streams.has(kind) || streams.size < MAX_JITTER_KINDS ? kind : "*";
  let next = streams.get(stream);
  if (!next) {
    next = prng(faults.jitterSeed);
    streams.set(stream, next);
  }
  return next();
}

/**
 * What the seeded jitter is drawn per (see Faults.jitterSeed): the first command's name, and
 * for EVALSHA* the script's SHA (a cache's hit script and its stats flush are different kinds);
 * "?" for a body that does not parse (it is refused after its delay).
 */
export function requestKind(commands: Command[] | undefined): string {
  const first = commands?.[0];
  if (!first) return "?";
  const [name, sha] = first;
  return name.startsWith("EVALSHA") ? `${name} ${sha ?? ""}` : name;
}

/** failCount, when set, is deterministic and overrides failRate; it then stops failing. */
function shouldFail(faults: Faults): boolean {
  if (faults.failCount !== undefined) {
    if (faults.failCount === 0) return false;
    faults.failCount -= 1;
    return true;
  }
  return faults.failRate > 0 && Math.random() < faults.failRate;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Returns true when the request was consumed by a fault. */
export async function injectFault(
  res: ServerResponse,
  faults: Faults,
  kind: string,
): Promise<boolean> {
  const delay = faults.latencyMs + jitterDraw(faults, kind) * faults.jitterMs;
  if (delay > 0) await sleep(delay);
  if (!shouldFail(faults)) return false;
  if (faults.failMode === "drop") {
    res.socket?.destroy();
    return true;
  }
  const message =
    faults.failError ?? `Injected fault: gateway answered HTTP ${faults.failStatus} on purpose`;
  sendJson(res, faults.failStatus, { error: message });
  return true;
}

export function faultsJson(faults: Faults): Json {
  const { failCount, jitterStreams: _generators, jitterSeed, ...rest } = faults;
  return {
    ...rest,
    ...(failCount === undefined ? {} : { failCount }),
    ...(jitterSeed === undefined ? {} : { jitterSeed }),
  };
}
