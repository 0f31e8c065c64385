import type { Env } from "../src/config/env";
import { warmables } from "../src/domain/warmables";
import { runScheduled } from "../src/jobs/warm";
import { createServices } from "../src/runtime/services";

export const scheduled: ExportedHandlerScheduledHandler<Env> = async (controller, env, ctx) => {
  const services = createServices(env, ctx);
  try {
    await runScheduled(
      services,
      { cron: controller.cron, scheduledTime: controller.scheduledTime },
      warmables,
    );
  } finally {
    ctx.waitUntil(services.dispose());
  }
};
