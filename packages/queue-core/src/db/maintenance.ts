import { sql } from 'kysely'
import type { Executor } from './database.ts'
import { appendError, HISTORY_COLUMNS, notifyChanges } from './history.ts'
import { renewedLease, type LeaseFence } from './leader.ts'
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
  /** Expired leases returned to the queue: pending at once, or scheduled after a backoff. */
  readonly rescued: number
  /** Of `rescued`, those scheduled after a backoff (their previous attempt's lease had expired too). */
  readonly delayed: number
  /** Expired leases whose attempts were spent, or whose cancellation was requested: moved to history. */
  readonly failed: number
  /** Milliseconds until the soonest remaining lease expires; null when nothing runs. */
  readonly nextExpiryMs: number | null
  /** False when `lease` was given and no longer holds the leadership: nothing was changed. */
  readonly leaseHeld: boolean
}

/** Options of {@link rescueExpired}. */
export interface RescueOptions {
  /** Jobs taken back per statement at most. */
  readonly limit: number
  /** Each handler's default attempts, for jobs enqueued without `maxAttempts`. */
  readonly maxAttempts: ReadonlyMap<string, number>
  /**
   * The leadership to fence on: every statement renews this lease and changes
   * nothing once it is no longer held. Omitted: unfenced (tests, tools).
   */
  readonly lease?: LeaseFence | null
  /**
   * Milliseconds to wait before attempt `attempt + 1` of a job whose lease
   * expired on `attempt` for the second time or more in a row (the
   * maintenance layer passes the retry backoff). Omitted: no wait.
   */
  readonly backoffMs?: (attempt: number) => number
}

/** The error recorded on an attempt whose lease expired. */
const LEASE_EXPIRED = sql`jsonb_build_object('attempt', j.attempt, 'at', now(), 'code', 'lease_expired',
                                              'message', 'the worker holding the job stopped heartbeating')`

/**
 * Takes back running jobs whose lease expired (their worker died or hung):
 * back to the queue with an error recorded; failed when no attempt is left;
 * cancelled when a cancellation was requested that the dead worker never saw.
 * The rescued job keeps its vtime, so it runs again ahead of newer work.
 *
 * A job whose previous attempt ended by a lease expiry too (its last error
 * is `lease_expired`) is scheduled after `backoffMs(attempt)` rather than
 * made pending: a job that hangs or kills every worker it lands on (a
 * poison job) then spends workers slowly until its attempts run out, and
 * fails with `lease_expired`. The first expiry returns the job at once: it
 * has already waited out its lease, and the usual cause is the worker's
 * death (a deploy's kill, the host), not the job.
 *
 * Two statements per batch: the first finds the expired jobs, the second
 * takes them back, re-checking each row under its lock (a heartbeat or a
 * completion may have come in between). The per-attempt delays are chosen
 * between the two, by the caller's backoff. Both renew and fence on `lease`.
 *
 * Index: jobs_pkey for the rows the first statement found ({@link findExpired}
 * names its own); leader_lease_pkey for the fence.
 */
export async function rescueExpired(db: Executor, args: RescueOptions): Promise<RescueCounts> {
  const fence = args.lease ?? null
  const found = await findExpired(db, { limit: args.limit, fence })
  const none = { rescued: 0, delayed: 0, failed: 0, nextExpiryMs: found.nextExpiryMs, leaseHeld: found.leaseHeld }
  if (!found.leaseHeld || found.jobs.length === 0) return none
  const delays = found.jobs.map((j) => (j.again && args.backoffMs ? Math.max(0, args.backoffMs(j.attempt)) : null))
  const types = [...args.maxAttempts.keys()]
  const maxes = [...args.maxAttempts.values()]
  const result = await sql<{ held: boolean; rescued: number; delayed: number; failed: number }>`
    with lease as (${renewedLease(fence)}),
    fence as (select not ${fence !== null} or exists (select 1 from lease) as held),
    expired as (
      select j.id, j.attempt, p.delay_ms, coalesce(j.max_attempts, m.max_attempts, ${DEFAULT_MAX_ATTEMPTS}) as allowed,
             j.cancel_requested, ${LEASE_EXPIRED} as error
      from unnest(${found.jobs.map((j) => j.id)}::bigint[], ${found.jobs.map((j) => j.attempt)}::int[], ${delays}::float8[])
             as p(id, attempt, delay_ms)
      join jobs j on j.id = p.id and j.attempt = p.attempt
      left join unnest(${types}::text[], ${maxes}::int[]) as m(type, max_attempts) on m.type = j.type
      where j.state = 'running' and j.locked_until < now() and (select held from fence)
      for update of j skip locked
    ),
    moved as (
      update jobs j
      set state = case when e.delay_ms is null then ${runnableState(sql.ref('j.store_id'), sql.ref('j.type'))} else 'scheduled' end,
          run_at = case when e.delay_ms is null then j.run_at else now() + e.delay_ms * interval '1 millisecond' end,
          locked_by = null, locked_until = null, lease_token = null,
          errors = ${appendError(sql.ref('j.errors'), sql.ref('e.error'))}
      from expired e
      where j.id = e.id and e.attempt < e.allowed and not e.cancel_requested
      returning j.id, j.state
    ),
    -- Out of attempts: failed. Cancellation requested before the worker died: cancelled, not run again.
    dead as (
      delete from jobs j using expired e
      where j.id = e.id and (e.attempt >= e.allowed or e.cancel_requested)
      returning j.*, e.error as final_error,
                case when e.cancel_requested then 'cancelled' else 'failed' end as final_state
    ),
    archived as (
      insert into job_history (${HISTORY_COLUMNS})
      select id, type, queue, store_id, user_id, priority, final_state, attempt, max_attempts, payload, dedupe_key, progress,
             ${appendError(sql.ref('errors'), sql.ref('final_error'))},
             null, run_at, created_at, started_at, now()
      from dead
      returning id
    ),
    ${notifyChanges()}
    select (select held from fence) as held,
           (select count(*) from moved)::int as rescued,
           (select count(*) from moved where state = 'scheduled')::int as delayed,
           (select count(*) from archived)::int as failed,
           (select count(*) from notified) as notified
  `.execute(db)
  const row = result.rows[0]
  if (row?.held !== true) return { ...none, leaseHeld: false }
  return { rescued: row.rescued, delayed: row.delayed, failed: row.failed, nextExpiryMs: found.nextExpiryMs, leaseHeld: true }
}

/**
 * The first half of a rescue: running jobs whose lease expired, oldest id
 * first, with whether their previous attempt's lease expired too; and when
 * the soonest lease still held runs out, so an idle rescuer can sleep until
 * then. Renews and fences on `fence` like the second half.
 *
 * Index: jobs_running_idx (running rows only; the running set is small), then
 * a filter on locked_until, which is deliberately in no index.
 */
async function findExpired(
  db: Executor,
  args: { limit: number; fence: LeaseFence | null },
): Promise<{ leaseHeld: boolean; jobs: ReadonlyArray<{ id: string; attempt: number; again: boolean }>; nextExpiryMs: number | null }> {
  const result = await sql<{ held: boolean; jobs: Array<{ id: string; attempt: number; again: boolean }>; next_expiry_ms: number | null }>`
    with lease as (${renewedLease(args.fence)}),
    fence as (select not ${args.fence !== null} or exists (select 1 from lease) as held),
    expired as (
      select j.id, j.attempt, coalesce(j.errors -> -1 ->> 'code' = 'lease_expired', false) as again
      from jobs j
      where j.state = 'running' and j.locked_until < now() and (select held from fence)
      order by j.id
      limit ${args.limit}
    )
    select (select held from fence) as held,
           coalesce((select json_agg(json_build_object('id', id::text, 'attempt', attempt, 'again', again) order by id) from expired), '[]') as jobs,
           (select extract(epoch from min(locked_until) - now()) * 1000 from jobs
            where state = 'running' and locked_until >= now())::float8 as next_expiry_ms
  `.execute(db)
  const row = result.rows[0]
  return { leaseHeld: row?.held === true, jobs: row?.jobs ?? [], nextExpiryMs: row?.next_expiry_ms ?? null }
}
