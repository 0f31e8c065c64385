-- Each outbox row records the CACHE_PREFIX it was written under; a drain applies only its own.
-- Rows written before this migration carry no prefix: they are given "ec", the default
-- CACHE_PREFIX. A deployment that ran with another prefix updates its pending rows before
-- deploying, e.g. UPDATE cache_outbox SET prefix = 'shop' WHERE processed_at IS NULL;
DROP INDEX "cache_outbox_pending_created_at_idx";--> statement-breakpoint
ALTER TABLE "cache_outbox" ADD COLUMN "prefix" text;--> statement-breakpoint
UPDATE "cache_outbox" SET "prefix" = 'ec' WHERE "prefix" IS NULL;--> statement-breakpoint
ALTER TABLE "cache_outbox" ALTER COLUMN "prefix" SET NOT NULL;--> statement-breakpoint
CREATE INDEX "cache_outbox_pending_prefix_id_idx" ON "cache_outbox" USING btree ("prefix","id") WHERE "cache_outbox"."processed_at" IS NULL;
