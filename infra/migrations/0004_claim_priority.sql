-- 0004_claim_priority
-- Why:    priority aging. `priority` stays what the job was given (shown in
--         its view and kept in history); `claim_priority` is the priority the
--         claim orders by. The leader's ager lowers it (toward urgent = 1) for
--         pending jobs whose virtual start time has fallen behind the global
--         virtual clock, so low-priority work cannot starve under a steady
--         stream of higher-priority work. jobs_claim_idx moves to
--         (claim_priority, vtime, id): the same walk, and the ager finds the
--         jobs to age with a range scan of it, one priority level at a time.
-- Locks:  ADD COLUMN with a constant default does not rewrite; the UPDATE
--         touches every live row and the index build takes a SHARE lock on
--         `jobs`. The table holds live jobs only: run it while quiet.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

alter table jobs add column claim_priority smallint not null default 5 check (claim_priority between 1 and 10);
update jobs set claim_priority = priority where claim_priority <> priority;

drop index jobs_claim_idx;
create index jobs_claim_idx on jobs (claim_priority, vtime, id) where state = 'pending';
