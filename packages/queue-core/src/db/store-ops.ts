import { sql } from 'kysely'
import type { Executor } from './database.ts'
import { HISTORY_COLUMNS } from './history.ts'
import { runnableState } from './pauses.ts'
import { NOTIFY_CHANNEL } from '../config.ts'

/** What a bounded bulk step changed, and whether rows were left for another call. */
export interface BulkStep {
  readonly changed: number
  readonly more: boolean
}

const step = (changed: number, limit: number): BulkStep => ({ changed, more: changed >= limit })

/**
 * Records a pause of a store (all types when `type` is '') and moves up to
 * `limit` of its pending jobs to paused. Index: jobs_store_idx.
 */
export async function pauseStep(db: Executor, args: { storeId: string; type: string; limit: number }): Promise<BulkStep> {
  const result = await sql<{ changed: number }>`
    with pause as (
      insert into store_pauses (store_id, type) values (${args.storeId}, ${args.type}) on conflict do nothing
    ),
    picked as (
      select id from jobs
      where store_id = ${args.storeId} and state = 'pending' and (${args.type} = '' or type = ${args.type})
      order by store_id, created_at, id
      limit ${args.limit}
      for update skip locked
    ),
    moved as (update jobs j set state = 'paused' from picked where j.id = picked.id returning j.id)
    select count(*)::int as changed from moved
  `.execute(db)
  return step(result.rows[0]?.changed ?? 0, args.limit)
}

/**
 * Removes a pause and moves up to `limit` of the jobs it held back to
 * pending (a job another pause still covers stays paused). Their virtual
 * start times move up by how far the global clock passed the earliest of
 * them, keeping their order and spacing: a store does not come back from a
 * pause ahead of everyone, nor behind. The store's clock moves past them.
 */
export async function resumeStep(db: Executor, args: { storeId: string; type: string; limit: number }): Promise<BulkStep> {
  const result = await sql<{ changed: number }>`
    with unpause as (
      delete from store_pauses where store_id = ${args.storeId} and type = ${args.type} returning 1
    ),
    picked as (
      select j.id, j.vtime from jobs j
      where j.store_id = ${args.storeId} and j.state = 'paused' and (${args.type} = '' or j.type = ${args.type})
        and not exists (
          select 1 from store_pauses p
          where p.store_id = j.store_id and p.type in ('', j.type) and p.type <> ${args.type}
        )
      order by j.vtime, j.id
      limit ${args.limit}
      for update of j skip locked
    ),
    shift as (
      select greatest(0, (select vtime from queue_clock) - min(vtime)) as by from picked
    ),
    moved as (
      update jobs j set state = 'pending', vtime = j.vtime + (select by from shift)
      from picked where j.id = picked.id
      returning j.vtime
    ),
    clocked as (
      update stores s set vclock = greatest(s.vclock, (select max(vtime) from moved))
      where s.store_id = ${args.storeId} and exists (select 1 from moved)
    ),
    notified as (select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from moved))
    select count(*)::int as changed, (select count(*) from notified) as notified, (select count(*) from unpause) as unpaused
    from moved
  `.execute(db)
  return step(result.rows[0]?.changed ?? 0, args.limit)
}

/**
 * Cancels up to `limit` of a store's jobs that have not started (pending,
 * scheduled or paused, as asked): moved to history as cancelled.
 */
export async function cancelWaitingStep(
  db: Executor,
  args: { storeId: string; type: string | null; states: ReadonlyArray<string>; limit: number },
): Promise<BulkStep> {
  const result = await sql<{ changed: number }>`
    with picked as (
      select id from jobs
      where store_id = ${args.storeId} and state = any(${[...args.states]}::text[])
        and (${args.type}::text is null or type = ${args.type}::text)
      order by store_id, created_at, id
      limit ${args.limit}
      for update skip locked
    ),
    gone as (delete from jobs j using picked where j.id = picked.id returning j.*),
    moved as (
      insert into job_history (${HISTORY_COLUMNS})
      select id, type, queue, store_id, user_id, priority, 'cancelled', attempt, max_attempts, payload, dedupe_key,
             progress, errors, null, run_at, created_at, started_at, now()
      from gone
      returning id
    )
    select count(*)::int as changed from moved
  `.execute(db)
  return step(result.rows[0]?.changed ?? 0, args.limit)
}

/**
 * Asks the workers running up to `limit` of a store's jobs to abort them
 * (their AbortSignal fires at the next heartbeat; they end cancelled).
 * Index: jobs_running_idx.
 */
export async function requestCancelStep(db: Executor, args: { storeId: string; type: string | null; limit: number }): Promise<BulkStep> {
  const result = await sql<{ changed: number }>`
    with picked as (
      select id from jobs
      where store_id = ${args.storeId} and state = 'running' and not cancel_requested
        and (${args.type}::text is null or type = ${args.type}::text)
      order by store_id, type, id
      limit ${args.limit}
      for update skip locked
    ),
    asked as (update jobs j set cancel_requested = true from picked where j.id = picked.id returning j.id)
    select count(*)::int as changed from asked
  `.execute(db)
  return step(result.rows[0]?.changed ?? 0, args.limit)
}

/**
 * Moves finished jobs (failed or cancelled) back to the queue, keeping their
 * ids and error lists and starting their attempts afresh: by ids, or up to
 * `limit` of a store's jobs in `state`. A job whose dedupe key a live job
 * holds now stays in history. New virtual start times charge the store like
 * an enqueue of cost 1 per job. Returns the ids moved.
 *
 * The history rows are locked before they move: two retries of one job (a
 * client retrying on a timeout) would otherwise both read the row and both
 * insert it into `jobs`, the second failing on the primary key. Locked, the
 * second waits, finds the row gone and moves nothing.
 * Index: job_history_id_idx (by ids), job_history_store_idx (by store).
 */
export async function retryFinished(
  db: Executor,
  args: { ids: ReadonlyArray<string> | null; storeId: string | null; type: string | null; state: 'failed' | 'cancelled' | null; limit: number },
): Promise<string[]> {
  const ids = args.ids === null ? null : [...args.ids]
  const result = await sql<{ id: string }>`
    with picked as (
      select h.* from job_history h
      where h.state in ('failed', 'cancelled')
        and (${ids}::bigint[] is null or h.id = any(${ids}::bigint[]))
        and (${args.storeId}::text is null or h.store_id = ${args.storeId}::text)
        and (${args.type}::text is null or h.type = ${args.type}::text)
        and (${args.state}::text is null or h.state = ${args.state}::text)
      order by h.store_id, h.finished_at, h.id
      limit ${args.limit}
      for update
    ),
    numbered as (
      select p.*, row_number() over (partition by p.store_id order by p.finished_at, p.id) as k from picked p
    ),
    charged as (
      insert into stores as s (store_id, vclock)
      select store_id, (select vtime from queue_clock) + count(*) from picked group by store_id order by store_id
      on conflict (store_id) do update
        set vclock = greatest(s.vclock, (select vtime from queue_clock))
                     + (select count(*) from picked p where p.store_id = excluded.store_id) / s.weight
      returning s.store_id, s.vclock, s.weight
    ),
    back as (
      insert into jobs (id, type, queue, store_id, user_id, priority, claim_priority, state, vtime, cost, run_at, attempt,
                        max_attempts, payload, dedupe_key, progress, errors, created_at)
      overriding system value
      select n.id, n.type, n.queue, n.store_id, n.user_id, n.priority, n.priority,
             ${runnableState(sql.ref('n.store_id'), sql.ref('n.type'))},
             c.vclock - ((select count(*) from picked p where p.store_id = n.store_id) - n.k) / c.weight,
             1, now(), 0, n.max_attempts, n.payload, n.dedupe_key, n.progress, n.errors, n.created_at
      from numbered n join charged c on c.store_id = n.store_id
      order by n.store_id, n.k
      on conflict (store_id, dedupe_key) where dedupe_key is not null do nothing
      returning id
    ),
    gone as (delete from job_history h using back where h.id = back.id),
    notified as (select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from back))
    select id, (select count(*) from notified) as notified from back
  `.execute(db)
  return result.rows.map((r) => String(r.id))
}
