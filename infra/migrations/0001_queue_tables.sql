-- 0001_queue_tables
-- Why:    the queue's own tables. `jobs` holds live work only (pending, scheduled,
--         running) so the claim index stays small whatever the history size;
--         finished jobs move to `job_history`, partitioned by finish day, so
--         retention is DROP TABLE on a partition instead of DELETE + VACUUM.
-- Locks:  creates new objects only.
-- Index:  jobs_claim_idx is the claim's only index: (priority, vtime, id) over
--         pending rows, so index order is claim order and no sort is needed.
--         Lease columns (locked_until, lease_token) are in no index, so a
--         heartbeat is a HOT update.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

-- One row per store: its fairness weight and virtual clock (start-time fair
-- queuing). `vclock` is the virtual time at which the store's last enqueued
-- work ends; a new job starts at max(store clock, global clock).
create table stores (
  store_id    text             primary key check (length(store_id) between 1 and 64),
  weight      double precision not null default 1 check (weight > 0),
  vclock      double precision not null default 0,
  created_at  timestamptz      not null default now()
) with (fillfactor = 70);

-- The global virtual clock: the highest vtime ever claimed. It only moves
-- forward, so an idle store is neither punished for past use nor rewarded for
-- idling when it comes back.
create table queue_clock (
  id     boolean          primary key default true check (id),
  vtime  double precision not null default 0
) with (fillfactor = 10);
insert into queue_clock (id, vtime) values (true, 0);

create table jobs (
  id               bigint generated always as identity primary key,
  type             text        not null check (length(type) between 1 and 128),
  queue            text        not null default 'default',
  store_id         text        not null check (length(store_id) between 1 and 64),
  user_id          text        check (length(user_id) <= 64),
  priority         smallint    not null default 5 check (priority between 1 and 10),
  state            text        not null check (state in ('pending', 'scheduled', 'running')),
  vtime            double precision not null default 0,
  cost             real        not null default 1 check (cost > 0),
  run_at           timestamptz not null default now(),
  attempt          integer     not null default 0 check (attempt >= 0),
  max_attempts     integer     check (max_attempts >= 1),  -- null: the handler's default
  payload          jsonb       not null default '{}'::jsonb,
  dedupe_key       text        check (length(dedupe_key) <= 255),
  locked_by        text,
  locked_until     timestamptz,
  lease_token      uuid,
  cancel_requested boolean     not null default false,
  progress         jsonb,
  errors           jsonb       not null default '[]'::jsonb,
  created_at       timestamptz not null default now(),
  started_at       timestamptz
) with (
  fillfactor = 70,                          -- room on the page for HOT heartbeats and state changes
  autovacuum_vacuum_scale_factor = 0.01,    -- the table is small and churns: vacuum early
  autovacuum_vacuum_insert_scale_factor = 0.01,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);

-- Claim: pending rows in claim order. Priority first, then fair virtual time.
create index jobs_claim_idx on jobs (priority, vtime, id) where state = 'pending';
-- Promotion of due scheduled (future or backed-off) jobs by the leader.
create index jobs_scheduled_idx on jobs (run_at) where state = 'scheduled';
-- The running set: rescuer scans it for expired leases, limits count it per store.
create index jobs_running_idx on jobs (store_id, type) where state = 'running';
-- Per-store views over live jobs. There is deliberately no (type, state) index:
-- it matches the claim's WHERE clause exactly, and before the first ANALYZE the
-- planner preferred it plus a sort over the claim index (measured: 6 ms instead
-- of 0.1 ms for a 10-job claim). Per-type counts scan the small live table.
create index jobs_store_idx on jobs (store_id, created_at, id);
-- Idempotent enqueue: one live job per (store, dedupe key).
create unique index jobs_dedupe_key on jobs (store_id, dedupe_key) where dedupe_key is not null;

create table job_history (
  id            bigint      not null,
  type          text        not null,
  queue         text        not null,
  store_id      text        not null,
  user_id       text,
  priority      smallint    not null,
  state         text        not null check (state in ('completed', 'failed', 'cancelled')),
  attempt       integer     not null,
  max_attempts  integer,
  payload       jsonb       not null,
  dedupe_key    text,
  progress      jsonb,
  errors        jsonb       not null,
  result        jsonb,
  run_at        timestamptz not null,
  created_at    timestamptz not null,
  started_at    timestamptz,
  finished_at   timestamptz not null default now()
) partition by range (finished_at);

-- Catches rows for days no partition was created for yet (first start before
-- the leader's retention service ran); the retention service keeps future days
-- covered so this stays empty in steady state.
create table job_history_default partition of job_history default;

create index job_history_id_idx on job_history (id);
create index job_history_store_idx on job_history (store_id, finished_at);
create index job_history_type_idx on job_history (type, state, finished_at);

-- The seed's health view, over live and finished jobs.
create view job_queue_health as
select
  type,
  count(*) filter (where state = 'pending')                      as pending,
  count(*) filter (where state = 'scheduled')                    as scheduled,
  count(*) filter (where state = 'running')                      as running,
  extract(epoch from now() - min(created_at) filter (where state = 'pending'))::double precision
                                                                 as oldest_pending_s,
  count(*) filter (where state = 'running' and started_at < now() - interval '30 minutes')
                                                                 as long_running
from jobs
group by type;
