import type { Env } from "../src/config/env";
import { processPurgeBatch } from "../src/jobs/purge";
import { createServices } from "../src/runtime/services";

export const queue: ExportedHandlerQueueHandler<Env> = async (batch, env, ctx) => {
  const services = createServices(env, ctx);
  try {
    await processPurgeBatch(services, batch.queue, batch.messages);
  } finally {
    ctx.waitUntil(services.dispose());
  }
};
