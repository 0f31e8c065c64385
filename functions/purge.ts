import type { Env } from "../src/config/env";
import { processDeadLetters } from "../src/jobs/dead-letter";
import { processPurgeBatch } from "../src/jobs/purge";
import { createServices } from "../src/runtime/services";

/** Both queues' consumer: the purge queue applies, its dead-letter queue hands back to the outbox. */
export const queue: ExportedHandlerQueueHandler<Env> = async (batch, env, ctx) => {
  const services = createServices(env, ctx);
  try {
    if (batch.queue === services.config.PURGE_DEAD_LETTER_QUEUE) {
      await processDeadLetters(services, batch.queue, batch.messages);
    } else {
      await processPurgeBatch(services, batch.queue, batch.messages);
    }
  } finally {
    ctx.waitUntil(services.dispose());
  }
};
