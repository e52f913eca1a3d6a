-- 0005_store_pauses
-- Why:    pausing a store's work (all of it, or one job type). Pausing moves the
--         store's pending jobs to a new live state, `paused`, which is in no
--         claim index, so a paused backlog costs the claim nothing (filtering
--         it out at claim time would have the claim step over all of it on
--         every call). While a pause row exists, jobs of that store (and type)
--         that would become pending become paused instead: at enqueue, on
--         promotion, on retry, on release. Resuming moves them back to
--         pending with their virtual start times moved up to the global clock,
--         so a long pause neither rewards nor punishes the store.
--         `type` '' pauses every type of the store.
-- Locks:  replacing the state check scans `jobs` (live rows only) under an
--         ACCESS EXCLUSIVE lock for that scan; the new table is new.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

alter table jobs drop constraint jobs_state_check;
alter table jobs add constraint jobs_state_check check (state in ('pending', 'scheduled', 'running', 'paused'));

create table store_pauses (
  store_id   text        not null check (length(store_id) between 1 and 64),
  type       text        not null default '' check (length(type) <= 128),
  paused_at  timestamptz not null default now(),
  primary key (store_id, type)
);

-- The health view counts paused jobs too (a new last column, as CREATE OR
-- REPLACE VIEW allows).
create or replace view job_queue_health as
select
  type,
  count(*) filter (where state = 'pending')                      as pending,
  count(*) filter (where state = 'scheduled')                    as scheduled,
  count(*) filter (where state = 'running')                      as running,
  extract(epoch from now() - min(created_at) filter (where state = 'pending'))::double precision
                                                                 as oldest_pending_s,
  count(*) filter (where state = 'running' and started_at < now() - interval '30 minutes')
                                                                 as long_running,
  count(*) filter (where state = 'paused')                       as paused
from jobs
group by type;
