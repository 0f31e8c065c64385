/**
 * Redis replies into Upstash's JSON: `{"result": ...}` or `{"error": ...}`, strings as base64
 * of the raw bytes when the client asked for `Upstash-Encoding: base64` (see README.md,
 * "Encoding").
 */
import type { Json } from "./http";

/**
 * Mirrors the client's `decode()`: a top-level "OK" is kept verbatim (the client never
 * base64-decodes it), while every other string - including "OK" nested in an array,
 * which the client *would* decode - must be base64.
 */
export function encodeReply(reply: unknown, base64: boolean, topLevel = true): Json {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "number") return reply;
  if (typeof reply === "bigint") return reply.toString();
  if (Array.isArray(reply)) return reply.map((r: unknown) => encodeReply(r, base64, false));
  const bytes = toBytes(reply);
  if (!base64) return bytes.toString("utf8");
  if (topLevel && bytes.length === 2 && bytes.toString("latin1") === "OK") return "OK";
  return bytes.toString("base64");
}

function toBytes(reply: unknown): Buffer {
  if (Buffer.isBuffer(reply)) return reply;
  // Errors nested in arrays (e.g. a Lua table holding a pcall failure) travel as their text.
  if (reply instanceof Error) return Buffer.from(reply.message, "utf8");
  return Buffer.from(String(reply), "utf8");
}

type Outcome = { result: Json } | { error: string };

export function outcome(error: Error | null, reply: unknown, base64: boolean): Outcome {
  return error ? { error: error.message } : { result: encodeReply(reply, base64) };
}
