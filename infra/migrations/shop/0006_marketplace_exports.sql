-- 0006_marketplace_exports
-- Why:    export.marketplace records each feed it builds and uploads, keyed by
--         the job id: a job run again after a crash reads its row and does
--         not upload a second time once the row says `uploaded`. The row also
--         tells support what was sent (product count, bytes, SHA-256) and
--         under which id the marketplace accepted it.
--         States: building (row opened, feed being built or uploaded; a
--         failed job leaves it here, the job records why), uploaded, empty
--         (the catalogue had no products, nothing was uploaded).
-- Locks:  creates a new table and index only.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table shop.marketplace_exports (
  id             bigint      primary key,
  store_id       text        not null check (length(store_id) between 1 and 64),
  marketplace    text        not null check (marketplace ~ '^[a-z0-9-]{1,40}$'),
  format         text        not null check (format in ('csv', 'xml')),
  state          text        not null default 'building' check (state in ('building', 'uploaded', 'empty')),
  product_count  integer     check (product_count >= 0),
  bytes          bigint      check (bytes >= 0),
  sha256         text        check (sha256 ~ '^[0-9a-f]{64}$'),
  remote_feed_id text        check (length(remote_feed_id) between 1 and 200),
  created_at     timestamptz not null default now(),
  uploaded_at    timestamptz,
  constraint marketplace_exports_uploaded_check check ((state = 'uploaded') = (remote_feed_id is not null and uploaded_at is not null))
);

-- A store's exports to one marketplace, newest first (support and the dashboard).
create index marketplace_exports_store_idx on shop.marketplace_exports (store_id, marketplace, created_at desc);
