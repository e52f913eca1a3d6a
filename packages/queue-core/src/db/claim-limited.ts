import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'
import type { ClaimedJobRow } from './rows.ts'
import { claimPicked, LIMITED_TYPES, type ClaimArgs } from './claim.ts'
import { preparedMarker } from './prepared.ts'
import { available, msUntilTokens, recoveredRate } from './rate-limits.ts'

/** Advisory-lock namespace of the per-type claim locks ("brlt"); the second key is hashtext(type). */
const LIMIT_LOCK_NAMESPACE = 0x62726c74

/**
 * Candidates a limited claim looks at per job it may take. Jobs over a limit
 * are skipped inside the statement, so a few more candidates than slots keep
 * a claim full when the head of the queue belongs to a store at its limit;
 * the store then counts as full and the next claim passes over it in the scan.
 */
const CANDIDATES_PER_SLOT = 1
const EXTRA_CANDIDATES = 32

/**
 * Job types whose claims take the limited path, among `types` (null: any):
 * see LIMITED_TYPES, the one definition.
 */
export async function limitedTypes(db: Executor, types: ReadonlyArray<string> | null): Promise<string[]> {
  const list = types === null ? null : [...types]
  const result = await sql<{ type: string }>`
    select t as type from unnest(${LIMITED_TYPES}) t
    where ${list}::text[] is null or t = any(${list}::text[])
    order by t
  `.execute(db)
  return result.rows.map((r) => r.type)
}

/**
 * Claims jobs of types that may be under concurrency limits, never taking a
 * store or the platform past a limit, even with many workers claiming at once.
 *
 * Why a lock: the claim counts the running jobs of each (store, type) and
 * takes only what fits. Two claimers counting at the same time would both see
 * room for the last place. So each claim first takes a transaction-scoped
 * advisory lock per limited type (in one global order: no deadlock), and
 * counts in a second statement, whose snapshot then includes every claim
 * committed before the lock was granted. Claims of unlimited types never take
 * these locks (claimStatement), and a transaction-scoped lock works behind a
 * transaction-mode pooler.
 *
 * Runs in its own transaction on a claim session (its settings rule out
 * sorts where an index walk will do; the window functions here sort only
 * the few candidates). The statement is prepared and uses its generic plan
 * (forced in the lock statement, no extra round trip): planning its CTEs
 * took 1.2 ms of every claim, and PostgreSQL never picked the generic plan
 * by itself because the disabled sorts inflate its estimate. The generic
 * plan is checked by claim-limited.test.ts.
 */
export async function claimLimitedOnSession(
  session: Executor,
  args: ClaimArgs & { readonly limited: ReadonlyArray<string> },
): Promise<{ rows: ClaimedJobRow[]; retryInMs: number | null }> {
  const all = await session.transaction().execute(async (trx) => {
    await sql`
      select count(pg_advisory_xact_lock(${LIMIT_LOCK_NAMESPACE}, h)), set_config('plan_cache_mode', 'force_generic_plan', true)
      from (select distinct hashtext(t) as h from unnest(${[...args.limited]}::text[]) t order by h) keys
    `.execute(trx)
    return (await claimLimitedStatement(args).execute(trx)).rows
  })
  const rows = all.filter((r) => r.id !== null)
  const hint = all.find((r) => r.id === null)
  return { rows, retryInMs: hint ? (hint as unknown as { retry_in_ms: number }).retry_in_ms : null }
}

/**
 * The limited claim, unexecuted (for EXPLAIN in tests).
 *
 * Candidates come in claim order from jobs_claim_idx, minus (store, type)
 * pairs and types already at their limit. Then, per (store, type) and per
 * type, the candidates are counted: where all of them fit in the room left
 * under the limit (the usual case), they pass as they are; only where they
 * do not are they numbered in claim order and cut at the room. A store's own
 * limit (store_type_limits) wins over its type's per-store default; the
 * platform limit (job_types.max_running) caps the sum.
 *
 * Built around `IN` / `NOT IN` subqueries (hashed by the planner) rather
 * than joins between CTEs: the planner estimates one row for every CTE here
 * and chose nested loops over candidates × running counts, 17 ms of a 30 ms
 * claim of 500 with 2,000 jobs running (measured).
 */
export function claimLimitedStatement(args: ClaimArgs): RawBuilder<ClaimedJobRow> {
  const types = args.types === null ? null : [...args.types]
  const candidates = args.limit * CANDIDATES_PER_SLOT + EXTRA_CANDIDATES
  return sql<ClaimedJobRow>`${sql.raw(preparedMarker('backroom_claim_limited_v1'))}
    with lim as (
      select type, max_running, max_running_per_store from job_types
      where ${types}::text[] is null or type = any(${types}::text[])
    ),
    -- Running jobs per type: one pass over the running set's index.
    type_running as (
      select type, count(*)::int as n from jobs
      where state = 'running' and (${types}::text[] is null or type = any(${types}::text[]))
      group by type
    ),
    -- Types where some store's cap could bind in this claim: the smallest cap
    -- any store has is below the type's running jobs plus every candidate.
    -- Only these need running jobs counted per store (the costly part: with
    -- limits far from binding, a claim skips it).
    store_capped_types as (
      select l.type from lim l
      left join type_running t on t.type = l.type
      where coalesce(t.n, 0) + ${candidates} > least(
        l.max_running_per_store,
        (select min(s.max_running) from store_type_limits s where s.type = l.type)
      )
    ),
    running as (
      select store_id, type, count(*)::int as n from jobs
      where state = 'running' and type = any(array(select type from store_capped_types))
        and exists (select from store_capped_types)
      group by store_id, type
    ),
    store_caps as (
      select r.store_id, r.type, r.n, coalesce(s.max_running, l.max_running_per_store) as cap
      from running r
      left join store_type_limits s on s.store_id = r.store_id and s.type = r.type
      left join lim l on l.type = r.type
    ),
    full_types as (select l.type from lim l join type_running t on t.type = l.type where t.n >= l.max_running),
    full_keys as (select store_id, type from store_caps where cap is not null and n >= cap),
    candidates as (
      select j.id, j.store_id, j.type, j.claim_priority, j.vtime, j.rate_key from jobs j
      where j.state = 'pending'
        and (${types}::text[] is null or j.type = any(${types}::text[]))
        and j.type <> all(array(select type from full_types))
        and (j.store_id, j.type) not in (select store_id, type from full_keys)
      order by j.claim_priority, j.vtime, j.id
      limit ${candidates}
    ),
    candidate_keys as (select store_id, type, count(*)::int as c from candidates group by store_id, type),
    tight_keys as (
      select k.store_id, k.type, coalesce(s.max_running, l.max_running_per_store) - coalesce(r.n, 0) as room
      from candidate_keys k
      left join store_type_limits s on s.store_id = k.store_id and s.type = k.type
      left join lim l on l.type = k.type
      left join running r on r.store_id = k.store_id and r.type = k.type
      where k.c > coalesce(s.max_running, l.max_running_per_store) - coalesce(r.n, 0)
    ),
    within_store as (
      select c.id, c.type, c.claim_priority, c.vtime, c.rate_key from candidates c
      where (c.store_id, c.type) not in (select store_id, type from tight_keys)
      union all
      select n.id, n.type, n.claim_priority, n.vtime, n.rate_key
      from (
        select c.*, row_number() over (partition by c.store_id, c.type order by c.claim_priority, c.vtime, c.id) as k
        from candidates c
        where (c.store_id, c.type) in (select store_id, type from tight_keys)
      ) n
      where n.k <= (select t.room from tight_keys t where t.store_id = n.store_id and t.type = n.type)
    ),
    type_counts as (select type, count(*)::int as c from within_store group by type),
    tight_types as (
      select k.type, l.max_running - coalesce(t.n, 0) as room
      from type_counts k
      join lim l on l.type = k.type
      left join type_running t on t.type = k.type
      where k.c > l.max_running - coalesce(t.n, 0)
    ),
    chosen as (
      select w.id, w.claim_priority, w.vtime, w.rate_key from within_store w
      where w.type not in (select type from tight_types)
      union all
      select n.id, n.claim_priority, n.vtime, n.rate_key
      from (
        select w.*, row_number() over (partition by w.type order by w.claim_priority, w.vtime, w.id) as k
        from within_store w
        where w.type in (select type from tight_types)
      ) n
      where n.k <= (select t.room from tight_types t where t.type = n.type)
    ),
    ordered as (select * from chosen order by claim_priority, vtime, id limit ${args.limit}),
    -- Rate limits last, so tokens are spent only on jobs this claim takes:
    -- each key's bucket grants what it holds, up to the jobs asking.
    rate_demand as (select rate_key as key, count(*)::int as c from ordered where rate_key is not null group by rate_key),
    grants as (
      update rate_limits r
      set tokens       = ${available('r')} - greatest(0, least(d.c, floor(${available('r')}))),
          rate         = ${recoveredRate('r')},
          refreshed_at = greatest(r.refreshed_at, now()),
          last_granted = greatest(0, least(d.c, floor(${available('r')})))::int
      from rate_demand d
      where r.key = d.key
      returning r.key, r.last_granted as granted, d.c as asked,
                ${msUntilTokens('r', 1)} as next_token_ms
    ),
    first_chosen as (
      select o.id from ordered o where o.rate_key is null or o.rate_key not in (select key from grants)
      union all
      select n.id from (
        select o.*, row_number() over (partition by o.rate_key order by o.claim_priority, o.vtime, o.id) as k
        from ordered o where o.rate_key in (select key from grants)
      ) n
      where n.k <= (select g.granted from grants g where g.key = n.rate_key)
    ),
    -- Only the rows taken are locked (locking every candidate cost a write
    -- per row). Claimers of these types wait on the type lock, so none holds
    -- them; a row another session took meanwhile (a cancel, or a plain claim
    -- of a type whose limit was just removed) is skipped, or re-checked for
    -- state = 'pending' once its lock is free.
    -- As an array (an init plan), so the rows are fetched by primary key: as
    -- a semi-join the planner once walked every pending row against them
    -- (3.5 s for a 500-job claim, measured; claim-limited.test.ts checks it).
    picked as (
      select j.id from jobs j
      where j.id = any(array(select id from first_chosen)) and j.state = 'pending'
      for update of j skip locked
    ),
    ${claimPicked(args, { retryHint: sql<number | null>`(select min(next_token_ms) from grants where granted < asked)` })}
  `
}
