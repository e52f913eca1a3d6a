-- 0006_rate_limits
-- Why:    rate limits per key (e.g. `marketplace:acme:store-42` → 10 calls/s),
--         shared by every worker process: a token bucket per key whose rate
--         adapts (additive increase, multiplicative decrease) when the remote
--         side answers 429. A job may name its key (`rate_key`): such a job is
--         claimed only with a token for it. Handlers take further tokens
--         themselves. Job types whose jobs carry keys are marked in job_types
--         (`rate_limited`), which sends their claims through the limited claim.
--         A bucket row refilled "in the future" (`refreshed_at` > now) holds no
--         tokens until then: that is how a Retry-After pause is kept.
-- Locks:  ADD COLUMN without default on `jobs` and `job_types` (no rewrite);
--         the new table is new.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

alter table jobs add column rate_key text check (length(rate_key) between 1 and 255);
alter table job_types add column rate_limited boolean not null default false;

create table rate_limits (
  key           text             primary key check (length(key) between 1 and 255),
  max_rate      double precision not null check (max_rate > 0),
  min_rate      double precision not null check (min_rate > 0),
  rate          double precision not null check (rate > 0),
  burst         double precision not null check (burst >= 1),
  recovery_s    double precision not null check (recovery_s > 0),
  tokens        double precision not null,
  refreshed_at  timestamptz      not null default now(),
  last_granted  integer          not null default 0
) with (fillfactor = 50);
