-- 0003_job_types_and_limits
-- Why:    fair share by cost, and concurrency limits configured in the database
--         and enforced at claim time across every worker process.
--         * job_types: per type, the fairness cost (declared by the handler
--           definition, which workers write on start, and an operator's
--           override that wins over it) and running limits: across the
--           platform (max_running) and per store (max_running_per_store).
--         * store_type_limits: a store's own limit for one type, over the
--           type's per-store default.
--         * stores.max_live_jobs: a cap on one store's live jobs (pending,
--           scheduled, paused, running); enqueue beyond it is refused.
--         The claim reads these tables on every call, so a change applies to
--         the next claim of every worker.
-- Locks:  creates new tables; adds a nullable column to `stores` (no rewrite).
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table job_types (
  type                  text        primary key check (length(type) between 1 and 128),
  declared_cost         real        check (declared_cost > 0),
  cost                  real        check (cost > 0),
  max_running           integer     check (max_running >= 1),
  max_running_per_store integer     check (max_running_per_store >= 1),
  updated_at            timestamptz not null default now()
);

create table store_type_limits (
  store_id    text    not null check (length(store_id) between 1 and 64),
  type        text    not null check (length(type) between 1 and 128),
  max_running integer not null check (max_running >= 1),
  primary key (store_id, type)
);

alter table stores add column max_live_jobs integer check (max_live_jobs >= 1);
