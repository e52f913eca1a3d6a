-- 0013_store_row_security
-- Why:    defence in depth for store isolation. The API's requests made with
--         a store key switch, for their transaction only, to the role
--         `backroom_store` and name their store in the setting
--         `backroom.store_id` (queue-core's withStoreScope). Row-level
--         security on the store-keyed tables then lets that role see and
--         write only rows of that store, so a query that forgets its
--         `store_id` filter still cannot read or change another store's
--         rows. A missing setting reads as NULL (or '' once the session
--         has used it), which equals no store_id: no rows (fail closed).
--         The role is NOLOGIN and has no BYPASSRLS. Nothing is FORCEd, so
--         the tables' owner (the worker, migrations, platform-key requests,
--         key lookups) is unaffected and the claim path costs nothing more.
--         The role gets only what the API's store requests use: no access
--         at all to api_keys, api_key_secret, rate_limits, leader_lease or
--         store_type_limits (store-keyed too, but never read by a store
--         request), and column privileges where a whole-table UPDATE would
--         let a store change its own fair-share weight, cap or priority
--         ordering. Partitions of job_history get no grants: the
--         role reaches history through the parent, where the policy applies.
--         Roles belong to the whole cluster and many databases may run this
--         file at once (tests do): creating the role tolerates a concurrent
--         creator. A migrating user that may not create roles (managed
--         PostgreSQL) gets a NOTICE and the rest is skipped; the API then
--         warns at start-up (`row_security_off`). Once an administrator
--         has created the role and granted it to the app's login, running
--         this file again as the tables' owner puts it in place: every
--         statement here may run any number of times.
-- Locks:  ENABLE ROW LEVEL SECURITY and CREATE POLICY take ACCESS EXCLUSIVE
--         on each table for a catalogue change only (no scan, no rewrite);
--         lock_timeout makes them fail fast rather than queue every claim
--         behind a long transaction. Re-run the migration if it times out.
-- Index:  none. The policies compare store_id with a stable setting, so the
--         store-leading indexes (jobs_store_idx, jobs_running_idx,
--         job_history_store_id_idx) still serve the API's store queries.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

set local lock_timeout = '5s';

do $$
declare
  is_super boolean := (select rolsuper from pg_roles where rolname = current_user);
  t text;
begin
  if not exists (select 1 from pg_roles where rolname = 'backroom_store') then
    begin
      create role backroom_store nologin nosuperuser nobypassrls;
    exception
      -- Another database's migration created it between our check and our insert.
      when duplicate_object or unique_violation then null;
      when insufficient_privilege then
        raise notice 'backroom: may not create role backroom_store (%); store row security is off until an administrator creates it', sqlerrm;
        return;
    end;
  end if;

  -- The login must be a member to switch to the role (a superuser may switch to any).
  if not is_super and not pg_has_role(current_user, 'backroom_store', 'MEMBER') then
    begin
      grant backroom_store to current_user;
    exception
      when duplicate_object or unique_violation then null;
      when insufficient_privilege or invalid_grant_operation then
        raise notice 'backroom: may not grant role backroom_store to % (%); an administrator must: grant backroom_store to %', current_user, sqlerrm, current_user;
    end;
  end if;

  execute format('grant usage on schema %I to backroom_store', current_schema());

  -- Each store-keyed table: its policy, for the role only (the owner is not subject to it).
  foreach t in array array['jobs', 'job_history', 'stores', 'store_pauses'] loop
    execute format('alter table %I enable row level security', t);
    if not exists (select 1 from pg_policies where schemaname = current_schema() and tablename = t and policyname = t || '_store_scope') then
      execute format(
        $p$create policy %I on %I to backroom_store
             using (store_id = current_setting('backroom.store_id', true))
             with check (store_id = current_setting('backroom.store_id', true))$p$,
        t || '_store_scope', t);
    end if;
  end loop;

  -- What the API's store requests do: enqueue (insert, dedupe look-up,
  -- coalescing fold and seal, capped-store lock), read and list, cancel
  -- (with its cascade over children), retry from history, queue health.
  -- Row locks (FOR UPDATE / FOR KEY SHARE) need UPDATE on some column.
  grant select, insert, delete on jobs to backroom_store;
  grant update (state, payload, coalesced, coalesce_key, run_at, cancel_requested) on jobs to backroom_store;
  grant select, insert, delete on job_history to backroom_store;
  grant update (state) on job_history to backroom_store;
  -- The enqueue charges the store's fair-share clock; weight and cap are the operator's.
  grant select on stores to backroom_store;
  grant insert (store_id, vclock), update (vclock) on stores to backroom_store;
  grant select on store_pauses to backroom_store;
  grant select on queue_clock to backroom_store;
  -- The enqueue reads type costs and marks a type rate-limited when a job carries a rate key.
  grant select on job_types to backroom_store;
  grant insert (type, rate_limited), update (rate_limited) on job_types to backroom_store;
end
$$;
