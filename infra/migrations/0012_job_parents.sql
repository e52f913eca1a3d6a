-- 0012_job_parents
-- Why:    a job may name a parent (EnqueueSpec.parentId), as BullMQ flows and
--         Oban workflows do: cancelling the parent cancels its live
--         descendants (waiting ones at once, running ones through their
--         AbortSignal), so work split into child jobs (an import's chunks)
--         stops with the job that started it. The link lives on the live
--         table only: a finished job needs no cascade, and `job_history`
--         keeps its fixed column list.
--         No foreign key on purpose: a parent leaves `jobs` when it finishes
--         (moved to history), and `on delete set null` would erase the link
--         before the cancel could follow it; a key check on every delete
--         from `jobs` would also tax every completion. Enqueue checks the
--         parent instead, in the insert statement itself.
-- Locks:  ADD COLUMN without a default is a catalogue-only change but takes
--         ACCESS EXCLUSIVE on `jobs` for an instant; lock_timeout makes it fail
--         fast rather than queue every claim behind a long transaction. The
--         index build takes SHARE on `jobs` while it scans the live rows (none
--         has a parent yet, so nothing is written): milliseconds. Re-run the
--         migration if it times out.
-- Index:  jobs_parent_idx (parent_id) where parent_id is not null: the cancel
--         cascade walks a parent's children by it. Jobs without a parent (almost
--         all) get no entry, and parent_id never changes after the insert, so
--         claims and heartbeats stay HOT updates.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

set local lock_timeout = '5s';

alter table jobs add column parent_id bigint;

create index jobs_parent_idx on jobs (parent_id) where parent_id is not null;
