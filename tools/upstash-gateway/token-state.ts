/**
 * What the gateway keeps per bearer token: its DB index, request and command counters, its
 * faults and the emulation's counters, and the control routes (`/__gateway/stats`, `reset`,
 * `faults`) that read and reset them. Per token, so parallel test files with different
 * tokens do not see each other's counters or faults.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type EmulationCounters, freshEmulationCounters } from "./emulation";
import { type Faults, faultsJson, parseFaults } from "./faults";
import { type ApiRoute, HttpError, type Json, sendJson } from "./http";
import { type Command, parseJson, readBody } from "./request";

export interface TokenState {
  db: number;
  requests: number;
  commands: number;
  byRoute: Record<ApiRoute, number>;
  /** Commands served, by name (EVALSHA, PUBLISH…): lets tests see what a request carried. */
  byCommand: Record<string, number>;
  /** Subscribe/psubscribe streams opened since the last reset. */
  streamsOpened: number;
  /**
   * Requests that asked for base64-encoded replies (`Upstash-Encoding: base64`, the client's
   * default): each reply string costs an encode here and a decode in the client.
   */
  base64Requests: number;
  faults: Faults | null;
  /** Scripts by lock, calls by kind, requests by server, sync waits (emulation.ts). */
  emulation: EmulationCounters;
}

export function freshCounters(): Pick<
  TokenState,
  "requests" | "commands" | "byRoute" | "byCommand" | "streamsOpened" | "base64Requests"
> {
  return {
    requests: 0,
    commands: 0,
    byRoute: { "/": 0, "/pipeline": 0, "/multi-exec": 0 },
    byCommand: {},
    streamsOpened: 0,
    base64Requests: 0,
  };
}

export function countCommand(state: TokenState, command: Command): void {
  const name = String(command[0] ?? "").toUpperCase();
  state.byCommand[name] = (state.byCommand[name] ?? 0) + 1;
}

/**
 * The control routes under `/__gateway/`, for the token whose state this is. `activeStreams`
 * counts its open subscribe streams (the gateway holds those; asked only for stats).
 */
export async function handleControl(
  req: IncomingMessage,
  res: ServerResponse,
  state: TokenState,
  pathname: string,
  activeStreams: (state: TokenState) => number,
) {
  const key = `${req.method ?? "GET"} ${pathname}`;
  if (key === "GET /__gateway/stats") {
    const { requests, commands, byRoute, byCommand, streamsOpened, base64Requests } = state;
    sendJson(res, 200, {
      requests,
      commands,
      base64Requests,
      byRoute: { ...byRoute },
      byCommand: { ...byCommand },
      streams: { active: activeStreams(state), opened: streamsOpened },
      ...(JSON.parse(JSON.stringify(state.emulation)) as { [key: string]: Json }),
    });
  } else if (key === "POST /__gateway/reset") {
    Object.assign(state, freshCounters(), { faults: null, emulation: freshEmulationCounters() });
    sendJson(res, 200, { ok: true });
  } else if (key === "POST /__gateway/faults") {
    state.faults = parseFaults(parseJson(await readBody(req)));
    sendJson(res, 200, { ok: true, faults: faultsJson(state.faults) });
  } else if (key === "GET /__gateway/faults") {
    sendJson(res, 200, { faults: state.faults ? faultsJson(state.faults) : null });
  } else if (key === "DELETE /__gateway/faults") {
    state.faults = null;
    sendJson(res, 200, { ok: true });
  } else {
    throw new HttpError(404, `No control route ${key}`);
  }
}
