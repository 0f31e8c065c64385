import type { Env } from "../src/config/env";
import { runWarm } from "../src/jobs/warm";
import { createServices } from "../src/runtime/services";

export const scheduled: ExportedHandlerScheduledHandler<Env> = async (controller, env, ctx) => {
  const services = createServices(env, ctx);
  try {
    await runWarm(services, controller.cron, controller.scheduledTime);
  } finally {
    ctx.waitUntil(services.dispose());
  }
};
