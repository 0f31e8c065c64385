import type { Services } from "../runtime/services";
import { recordHeartbeat } from "./heartbeat";

export interface WarmReport {
  cron: string;
  scheduledTime: number;
}

/**
 * The cron tick. Warming hot keys and draining the outbox arrive with the cache engine;
 * for now the tick proves it runs against the real Redis by leaving a heartbeat.
 */
export async function runWarm(
  services: Services,
  cron: string,
  scheduledTime: number,
): Promise<WarmReport> {
  const report = { cron, scheduledTime };
  await recordHeartbeat(services.redis, services.config.CACHE_PREFIX, "warm", report);
  console.log(`warm: tick for "${cron}" at ${new Date(scheduledTime).toISOString()}`);
  return report;
}
