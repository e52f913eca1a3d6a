-- 0009_cancelled_imports
-- Why:    cancelling an import's parent job cancels its chunk jobs (queue
--         cascade: waiting chunks at once, running ones aborted). The import
--         then ends `cancelled` instead of `done`, and each chunk that never
--         applied its rows is marked `cancelled` rather than `failed`, so the
--         partial report, read from the import's own tables, says which line
--         ranges were applied and which were not.
-- Locks:  swapping a check constraint takes ACCESS EXCLUSIVE on each table
--         until the migration commits, while the new check scans it: both
--         tables hold one row per import or per chunk, not per feed line, so
--         this is short. lock_timeout makes it fail fast rather than queue the
--         imports' writers behind a long transaction; re-run it if it times out.
-- Index:  none.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

set local lock_timeout = '5s';

alter table shop.product_imports
  drop constraint product_imports_state_check,
  add constraint product_imports_state_check check (state in ('staging', 'running', 'done', 'cancelled'));

alter table shop.product_import_chunks
  drop constraint product_import_chunks_state_check,
  add constraint product_import_chunks_state_check check (state in ('pending', 'done', 'failed', 'cancelled'));
