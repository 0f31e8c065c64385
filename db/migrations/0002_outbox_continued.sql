-- When an outbox row's unfinished pattern purges were last handed to the queue as a
-- continuation: drains leave such a row to its chain for a while (src/domain/outbox.ts).
ALTER TABLE "cache_outbox" ADD COLUMN "continued_at" timestamp with time zone;