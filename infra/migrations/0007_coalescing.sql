-- 0007_coalescing
-- Why:    coalescing: a job type may declare that a new job for the same
--         store and coalesce key folds into the one still waiting (e.g. 500
--         stock updates of one store become one sync job). The merge runs in
--         the enqueue statement itself (INSERT ... ON CONFLICT DO UPDATE on
--         the index below), so concurrent enqueuers never lose an update and
--         the API can coalesce without loading handler code. The strategy is
--         one of: 'append' (concatenate the array under `coalesce_field`),
--         'merge' (shallow JSON object merge, newer keys win), 'replace'
--         (the newest payload wins).
--         A coalescing job waits up to `coalesce_max_delay_ms` for more
--         (scheduled that far ahead), and takes at most `coalesce_max_batch`
--         enqueues; a full one is sealed (made due now) and a new one starts.
-- Locks:  ADD COLUMN (no rewrite: nullable, or a constant default); the index
--         build takes a SHARE lock on `jobs` (live rows only).
-- Revert: forward-only. Undo by a later migration, never by editing this file.

alter table job_types
  add column coalesce_strategy     text    check (coalesce_strategy in ('append', 'merge', 'replace')),
  add column coalesce_field        text    check (length(coalesce_field) between 1 and 128),
  add column coalesce_max_delay_ms integer check (coalesce_max_delay_ms between 0 and 86400000),
  add column coalesce_max_batch    integer check (coalesce_max_batch >= 1);

alter table jobs
  add column coalesce_key text    check (length(coalesce_key) between 1 and 255),
  add column coalesced    integer not null default 1 check (coalesced >= 1);

-- One open (not yet running) coalescing job per (store, type, key).
create unique index jobs_coalesce_idx on jobs (store_id, type, coalesce_key)
  where coalesce_key is not null and state in ('scheduled', 'pending', 'paused');
