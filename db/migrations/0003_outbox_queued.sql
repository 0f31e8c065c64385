-- When a drain last handed an outbox row to the queue because Redis was down: drains during
-- the same outage leave it to the queue for a while (src/domain/outbox.ts, QUEUED_GRACE_S).
ALTER TABLE "cache_outbox" ADD COLUMN "queued_at" timestamp with time zone;