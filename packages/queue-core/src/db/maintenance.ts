import { sql } from 'kysely'
import type { Executor } from './database.ts'
import { appendError, HISTORY_COLUMNS } from './history.ts'
import { runnableState } from './pauses.ts'
import { DEFAULT_MAX_ATTEMPTS, NOTIFY_CHANNEL } from '../config.ts'

/**
 * Moves due scheduled jobs (future runAt, backoff, snooze) to pending and
 * notifies once if any moved. Index: jobs_scheduled_idx (run_at) WHERE state = 'scheduled'.
 */
export async function promoteDue(db: Executor, args: { limit: number }): Promise<{ promoted: number; nextDueMs: number | null }> {
  const result = await sql<{ promoted: number; next_due_ms: number | null }>`
    with due as (
      select id from jobs
      where state = 'scheduled' and run_at <= now()
      order by run_at
      limit ${args.limit}
      for update skip locked
    ),
    moved as (
      update jobs j set state = ${runnableState(sql.ref('j.store_id'), sql.ref('j.type'))} from due where j.id = due.id returning j.id
    ),
    notified as (
      select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from moved)
    )
    select (select count(*) from moved)::int as promoted, (select count(*) from notified) as notified,
           -- When the next scheduled job falls due, so an idle promoter can sleep until then.
           -- Due rows this pass skipped count too (<= 0: due already): one
           -- locked by a concurrent enqueue folding into it would otherwise be
           -- forgotten until the longest sleep. The moved rows still read as
           -- scheduled in this statement's snapshot, hence the exclusion.
           (select extract(epoch from min(run_at) - now()) * 1000 from jobs
            where state = 'scheduled' and id not in (select id from moved))::float8 as next_due_ms
  `.execute(db)
  const row = result.rows[0]
  return { promoted: row?.promoted ?? 0, nextDueMs: row?.next_due_ms ?? null }
}

/** What one rescue pass did. */
export interface RescueCounts {
  /** Expired leases returned to pending. */
  readonly rescued: number
  /** Expired leases whose attempts were spent, or whose cancellation was requested: moved to history. */
  readonly failed: number
  /** Milliseconds until the soonest remaining lease expires; null when nothing runs. */
  readonly nextExpiryMs: number | null
}

/**
 * Takes back running jobs whose lease expired (their worker died or hung):
 * back to pending with an error recorded; failed when no attempt is left;
 * cancelled when a cancellation was requested that the dead worker never saw.
 * The rescued job keeps its vtime, so it runs again ahead of newer work.
 *
 * Index: jobs_running_idx (running rows only; the running set is small), then
 * a filter on locked_until, which is deliberately in no index.
 *
 * `maxAttempts` gives each handler's default for jobs enqueued without one.
 */
export async function rescueExpired(
  db: Executor,
  args: { limit: number; maxAttempts: ReadonlyMap<string, number> },
): Promise<RescueCounts> {
  const types = [...args.maxAttempts.keys()]
  const maxes = [...args.maxAttempts.values()]
  const result = await sql<{ rescued: number; failed: number; next_expiry_ms: number | null }>`
    with expired as (
      select j.id, j.attempt, coalesce(j.max_attempts, m.max_attempts, ${DEFAULT_MAX_ATTEMPTS}) as allowed,
             j.cancel_requested,
             jsonb_build_object('attempt', j.attempt, 'at', now(), 'code', 'lease_expired',
                                'message', 'the worker holding the job stopped heartbeating') as error
      from jobs j
      left join unnest(${types}::text[], ${maxes}::int[]) as m(type, max_attempts) on m.type = j.type
      where j.state = 'running' and j.locked_until < now()
      order by j.id
      limit ${args.limit}
      for update of j skip locked
    ),
    retried as (
      update jobs j
      set state = ${runnableState(sql.ref('j.store_id'), sql.ref('j.type'))}, locked_by = null, locked_until = null, lease_token = null,
          errors = ${appendError(sql.ref('j.errors'), sql.ref('e.error'))}
      from expired e
      where j.id = e.id and e.attempt < e.allowed and not e.cancel_requested
      returning j.id
    ),
    -- Out of attempts: failed. Cancellation requested before the worker died: cancelled, not run again.
    dead as (
      delete from jobs j using expired e
      where j.id = e.id and (e.attempt >= e.allowed or e.cancel_requested)
      returning j.*, e.error as final_error,
                case when e.cancel_requested then 'cancelled' else 'failed' end as final_state
    ),
    moved as (
      insert into job_history (${HISTORY_COLUMNS})
      select id, type, queue, store_id, user_id, priority, final_state, attempt, max_attempts, payload, dedupe_key, progress,
             ${appendError(sql.ref('errors'), sql.ref('final_error'))},
             null, run_at, created_at, started_at, now()
      from dead
      returning id
    ),
    notified as (
      select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from retried)
    )
    select (select count(*) from retried)::int as rescued, (select count(*) from moved)::int as failed,
           (select count(*) from notified) as notified,
           -- The soonest a lease still held can expire, so an idle rescuer can sleep until then.
           (select extract(epoch from min(locked_until) - now()) * 1000 from jobs
            where state = 'running' and locked_until >= now())::float8 as next_expiry_ms
  `.execute(db)
  const row = result.rows[0]
  return { rescued: row?.rescued ?? 0, failed: row?.failed ?? 0, nextExpiryMs: row?.next_expiry_ms ?? null }
}
