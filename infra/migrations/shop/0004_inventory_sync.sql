-- 0004_inventory_sync
-- Why:    sync.inventory (packages/handlers/src/sync) sets shop.products.stock
--         from an inventory API and needs two things for it:
--         * shop.products.stock_updated_at: the source's updatedAt of the level
--           now in `stock`. A sync writes a level only when it is newer, so a
--           late page or a replayed job never puts older stock back. It sits on
--           the product row rather than in a side table so the guard and the
--           value change in one conditional UPDATE (race-free under the row
--           lock, no second table to keep in step or to clean when products
--           go). Null: never synced (any level applies). Other writers of
--           `stock` (imports) leave it as it is.
--         * shop.inventory_syncs: each store's last sync (when it started and
--           finished, which job, what it did), for operators and dashboards.
-- Locks:  ADD COLUMN, nullable without default, is a catalogue-only change (no
--         table rewrite) but takes ACCESS EXCLUSIVE on shop.products for an
--         instant; lock_timeout makes it fail fast rather than queue every
--         reader behind a long transaction. Re-run the migration if it times out.
-- Index:  none added; syncs update by the primary key (store_id, sku).
-- Revert: forward-only. Undo by a later migration, never by editing this file.

set local lock_timeout = '5s';

alter table shop.products add column stock_updated_at timestamptz;

create table shop.inventory_syncs (
  store_id              text        primary key check (length(store_id) between 1 and 64),
  last_started_at       timestamptz not null,
  last_started_job_id   bigint      not null,
  last_finished_at      timestamptz,
  last_finished_job_id  bigint,
  last_kind             text        check (last_kind in ('full', 'skus')),
  last_full_finished_at timestamptz,
  -- Counts of the last finished sync.
  pages                 integer     not null default 0 check (pages >= 0),
  levels_seen           integer     not null default 0 check (levels_seen >= 0),
  levels_applied        integer     not null default 0 check (levels_applied >= 0),
  levels_skipped        integer     not null default 0 check (levels_skipped >= 0),
  unknown_skus          integer     not null default 0 check (unknown_skus >= 0)
);
