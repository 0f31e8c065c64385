/**
 * The gateway's HTTP plumbing: the API routes and the JSON they carry, errors that know their
 * status, JSON answers, the bearer token, and a listening server's URL and port.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type ApiRoute = "/" | "/pipeline" | "/multi-exec";
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

const API_ROUTES: readonly ApiRoute[] = ["/", "/pipeline", "/multi-exec"];

/** An error that already knows which HTTP status it deserves. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: Json,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return match?.[1];
}

export function apiRoute(pathname: string): ApiRoute | undefined {
  return API_ROUTES.find((r) => r === pathname);
}

export function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
