import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'
import type { ClaimedJobRow } from './rows.ts'
import { claimPicked, type ClaimArgs } from './claim.ts'

/** Advisory-lock namespace of the per-type claim locks ("brlt"); the second key is hashtext(type). */
const LIMIT_LOCK_NAMESPACE = 0x62726c74

/**
 * Candidates a limited claim looks at per job it may take. Jobs over a limit
 * are skipped inside the statement, so a few more candidates than slots keep
 * a claim full when the head of the queue belongs to a store at its limit;
 * the store then counts as full and the next claim passes over it in the scan.
 */
const CANDIDATES_PER_SLOT = 4
const EXTRA_CANDIDATES = 16

/**
 * Job types under a concurrency limit, among `types` (null: any): a per-type
 * platform limit, a per-store default, or a store's own limit.
 */
export async function limitedTypes(db: Executor, types: ReadonlyArray<string> | null): Promise<string[]> {
  const list = types === null ? null : [...types]
  const result = await sql<{ type: string }>`
    select type from job_types
    where (max_running is not null or max_running_per_store is not null) and (${list}::text[] is null or type = any(${list}::text[]))
    union
    select distinct type from store_type_limits where ${list}::text[] is null or type = any(${list}::text[])
    order by type
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
 * the few candidates).
 */
export async function claimLimitedOnSession(
  session: Executor,
  args: ClaimArgs & { readonly limited: ReadonlyArray<string> },
): Promise<ClaimedJobRow[]> {
  return session.transaction().execute(async (trx) => {
    await sql`
      select count(pg_advisory_xact_lock(${LIMIT_LOCK_NAMESPACE}, h))
      from (select distinct hashtext(t) as h from unnest(${[...args.limited]}::text[]) t order by h) keys
    `.execute(trx)
    return (await claimLimitedStatement(args).execute(trx)).rows
  })
}

/**
 * The limited claim, unexecuted (for EXPLAIN in tests). Candidates come in
 * claim order from jobs_claim_idx, minus (store, type) pairs and types already
 * at their limit; then each candidate is numbered within its (store, type) and
 * its type, and kept only while running + its number stays within the limits.
 * A store's own limit (store_type_limits) wins over its type's per-store
 * default; the platform limit (job_types.max_running) caps the sum.
 */
export function claimLimitedStatement(args: ClaimArgs): RawBuilder<ClaimedJobRow> {
  const types = args.types === null ? null : [...args.types]
  const candidates = args.limit * CANDIDATES_PER_SLOT + EXTRA_CANDIDATES
  return sql<ClaimedJobRow>`
    with lim as (
      select type, max_running, max_running_per_store from job_types
      where ${types}::text[] is null or type = any(${types}::text[])
    ),
    running as (
      select store_id, type, count(*)::int as n from jobs
      where state = 'running' and (${types}::text[] is null or type = any(${types}::text[]))
      group by store_id, type
    ),
    store_caps as (
      select r.store_id, r.type, r.n, coalesce(s.max_running, l.max_running_per_store) as cap
      from running r
      left join store_type_limits s on s.store_id = r.store_id and s.type = r.type
      left join lim l on l.type = r.type
    ),
    type_running as (select type, sum(n)::int as n from running group by type),
    full_types as (select l.type from lim l join type_running t on t.type = l.type where t.n >= l.max_running),
    full_keys as (select store_id, type from store_caps where cap is not null and n >= cap),
    candidates as (
      select j.id, j.store_id, j.type, j.claim_priority, j.vtime from jobs j
      where j.state = 'pending'
        and (${types}::text[] is null or j.type = any(${types}::text[]))
        and j.type <> all(array(select type from full_types))
        and (j.store_id, j.type) not in (select store_id, type from full_keys)
      order by j.claim_priority, j.vtime, j.id
      limit ${candidates}
      for update skip locked
    ),
    numbered_in_store as (
      select c.*, row_number() over (partition by c.store_id, c.type order by c.claim_priority, c.vtime, c.id) as k
      from candidates c
    ),
    within_store as (
      select n.* from numbered_in_store n
      left join store_caps sc on sc.store_id = n.store_id and sc.type = n.type
      left join store_type_limits s on s.store_id = n.store_id and s.type = n.type
      left join lim l on l.type = n.type
      where coalesce(s.max_running, l.max_running_per_store) is null
         or coalesce(sc.n, 0) + n.k <= coalesce(s.max_running, l.max_running_per_store)
    ),
    numbered_in_type as (
      select w.id, w.type, w.claim_priority, w.vtime, row_number() over (partition by w.type order by w.claim_priority, w.vtime, w.id) as k
      from within_store w
    ),
    picked as (
      select t.id from numbered_in_type t
      left join lim l on l.type = t.type
      left join type_running tr on tr.type = t.type
      where l.max_running is null or coalesce(tr.n, 0) + t.k <= l.max_running
      order by t.claim_priority, t.vtime, t.id
      limit ${args.limit}
    ),
    ${claimPicked(args)}
  `
}
