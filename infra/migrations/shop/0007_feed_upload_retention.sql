-- 0007_feed_upload_retention
-- Why:    feed uploads expire (UPLOAD_RETENTION_HOURS, deleted by the API:
--         apps/api/src/upload-retention.ts). The background sweep looks for
--         the oldest uploads of every store, `created_at < cutoff` in
--         (created_at, upload_id) order; feed_uploads_store_idx leads with
--         store_id and serves only the per-store deletion and quota sum.
-- Locks:  a plain CREATE INDEX: SHARE lock on shop.feed_uploads while it
--         builds (one row per upload, not per part: a short lock; uploads
--         starting meanwhile wait for it).
-- Index:  feed_uploads_created_idx (created_at, upload_id).
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create index feed_uploads_created_idx on shop.feed_uploads (created_at, upload_id);
