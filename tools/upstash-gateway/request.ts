/**
 * Request bodies and paths into Redis commands: `["SET","k","v"]` on `/`, a list of them on
 * `/pipeline` and `/multi-exec`, or Upstash's path form (`GET /get/k`). Each command is
 * upper-cased and checked against the refusal rules (refusal.ts); anything malformed is a 400
 * saying what was wrong.
 */
import type { IncomingMessage } from "node:http";
import { type ApiRoute, errorText, HttpError } from "./http";
import { refusalReason, scopeToDatabase } from "./refusal";

/** A command as the gateway runs it: the name (upper-cased by `toCommand`), then its arguments. */
export type Command = [name: string, ...args: string[]];

/**
 * Upstash refuses a request over 10 MB ("ERR max request size exceeded", Free and Pay as you go:
 * upstash.com/docs/redis/troubleshooting/max_request_size_exceeded), so the gateway does too: a
 * value that fits locally but not in production must fail here first. The body is read to its
 * end before answering (so the client gets the error, not a reset connection), up to twice that.
 */
export const MAX_REQUEST_BYTES = 10_000_000;
const MAX_READ_BYTES = 2 * MAX_REQUEST_BYTES;

function toArgument(value: unknown, position: number): string {
  // The client's serializer passes numbers and booleans through as raw JSON.
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const kind = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  throw new HttpError(400, `Command argument ${position} must be a string or number, got ${kind}`);
}

export function toCommand(value: unknown, label: string): Command {
  if (!Array.isArray(value)) {
    throw new HttpError(400, `${label} must be a JSON array like ["SET","key","value"]`);
  }
  if (value.length === 0) throw new HttpError(400, `${label} is empty`);
  const [name, ...args] = value.map((v: unknown, i) => toArgument(v, i));
  if (!name) throw new HttpError(400, `${label} has an empty command name`);
  // Upper-casing also sidesteps ioredis's reply transformers (e.g. HGETALL -> object),
  // which are keyed by lower-case name and would change the wire shape.
  const command: Command = [name.toUpperCase(), ...args];
  const reason = refusalReason(command);
  if (reason)
    throw new HttpError(400, `${label}: ${command[0]} is not supported by the gateway (${reason})`);
  return scopeToDatabase(command);
}

export function toCommandList(value: unknown, route: ApiRoute): Command[] {
  if (!Array.isArray(value) || !value.every(Array.isArray)) {
    throw new HttpError(400, `${route} expects a JSON array of command arrays like [["GET","k"]]`);
  }
  if (value.length === 0) throw new HttpError(400, `${route} needs at least one command`);
  return value.map((c: unknown, i) => toCommand(c, `Command ${i + 1}`));
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `Request body is not valid JSON: ${errorText(error)}`);
  }
}

/** Upstash's path form: `GET /get/key`, or `POST /set/key` with the value as the raw body. */
export function commandFromPath(pathname: string, method: string, body: Buffer): Command {
  const segments = pathname.split("/").filter(Boolean).map(decodeSegment);
  if (method === "POST" && body.length > 0) segments.push(body.toString("utf8"));
  return toCommand(segments, "Command");
}

export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `Malformed percent-encoding in path segment "${segment}"`);
  }
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_READ_BYTES) {
        reject(new HttpError(400, "ERR max request size exceeded"));
        req.destroy();
        return;
      }
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_REQUEST_BYTES) reject(new HttpError(400, "ERR max request size exceeded"));
      else resolve(Buffer.concat(chunks));
    });
    req.on("error", reject);
  });
}
