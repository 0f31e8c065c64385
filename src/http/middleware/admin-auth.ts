import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";
import { HttpError } from "../errors";

const encoder = new TextEncoder();

/**
 * Compares digests, not the strings: equal-length inputs and a loop without early exit, so
 * the time taken says nothing about how much of the token was right.
 */
async function sameSecret(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Bearer ADMIN_TOKEN on every /admin route; 401 with the JSON error shape otherwise. */
export const adminAuth = createMiddleware<AppEnv>(async (c, next) => {
  const header = c.req.header("authorization") ?? "";
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1] || !(await sameSecret(match[1], c.var.services.config.ADMIN_TOKEN))) {
    c.header("WWW-Authenticate", 'Bearer realm="edgecache-admin"');
    throw new HttpError(
      401,
      "unauthorized",
      "Admin routes need Authorization: Bearer <ADMIN_TOKEN>",
    );
  }
  await next();
});
