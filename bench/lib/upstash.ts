import { Redis } from "@upstash/redis";
import type { UpstashOptions } from "./types";

/**
 * A contender's @upstash/redis client on `token`: the library's defaults (auto-pipelining on)
 * but telemetry, unless the contender asks otherwise (`ContenderEnv.upstash`).
 */
export function benchUpstash(url: string, token: string, options?: UpstashOptions): Redis {
  return new Redis({ url, token, enableTelemetry: false, ...options });
}
