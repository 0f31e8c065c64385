import { z } from "zod";

const name = z.string().min(1).max(512);

/**
 * An invalidation event, as written to cache_outbox and sent on the purge queue.
 * `versions` maps a versioned entity key (e.g. "product:42") to the newest committed version,
 * so a late or duplicated event can never move the cache backwards.
 */
export const invalidationEventSchema = z
  .object({
    keys: z.array(name).max(1000).optional(),
    tags: z.array(name).max(1000).optional(),
    patterns: z.array(name).max(100).optional(),
    versions: z.record(name, z.number().int().nonnegative()).optional(),
    origin: z.string().min(1).max(128),
    at: z.number().int().nonnegative(),
  })
  .strict();

export type InvalidationEvent = z.infer<typeof invalidationEventSchema>;
