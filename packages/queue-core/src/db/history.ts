import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'
import type { JobRow } from './rows.ts'
import { fenceArrays, LIMITED_TYPES } from './claim.ts'
import { runnableState } from './pauses.ts'
import { MAX_KEPT_ERRORS, NOTIFY_CHANNEL } from '../config.ts'
import type { Fence, FinalState, JobError } from '../types.ts'

/** The columns copied from `jobs` into `job_history`, in one fixed order. */
export const HISTORY_COLUMNS = sql.raw(
  'id, type, queue, store_id, user_id, priority, state, attempt, max_attempts, payload, dedupe_key, progress, errors, result, run_at, created_at, started_at, finished_at',
)

/** Appends one error to a job's `errors` array, dropping the oldest beyond MAX_KEPT_ERRORS. */
export const appendError = (errors: RawBuilder<unknown>, error: RawBuilder<unknown>): RawBuilder<unknown> => sql`
  case when ${error} is null then ${errors}
       else (case when jsonb_array_length(${errors}) >= ${MAX_KEPT_ERRORS} then ${errors} - 0 else ${errors} end)
            || jsonb_build_array(${error})
  end`

/** One finished attempt for {@link finishMany}. */
export interface FinishItem {
  readonly fence: Fence
  readonly state: FinalState
  /** JSON text of the handler's return value, or null. */
  readonly result: string | null
  readonly error: JobError | null
}

/**
 * Moves finished attempts from `jobs` to `job_history` in one statement,
 * fenced on (id, attempt, lease token). Returns the ids that matched; an id
 * missing from the answer lost its lease and changed nothing.
 */
export async function finishMany(db: Executor, items: ReadonlyArray<FinishItem>): Promise<string[]> {
  if (items.length === 0) return []
  const { ids, attempts, tokens } = fenceArrays(items.map((i) => i.fence))
  const states = items.map((i) => i.state)
  const results = items.map((i) => i.result)
  const errors = items.map((i) => (i.error === null ? null : JSON.stringify(i.error)))
  const result = await sql<{ id: string }>`
    with f as (
      select * from unnest(${ids}::bigint[], ${attempts}::int[], ${tokens}::uuid[], ${states}::text[], ${results}::jsonb[], ${errors}::jsonb[])
        as f(id, attempt, token, state, result, error)
    ),
    done as (
      delete from jobs j
      using f
      where j.id = f.id and j.attempt = f.attempt and j.lease_token = f.token and j.state = 'running'
      returning j.*, f.state as final_state, f.result as final_result, f.error as final_error
    ),
    ${freedPlaces('done')}
    insert into job_history (${HISTORY_COLUMNS})
    select id, type, queue, store_id, user_id, priority, final_state, attempt, max_attempts, payload, dedupe_key,
           progress, ${appendError(sql.ref('errors'), sql.ref('final_error'))}, final_result, run_at, created_at, started_at, now()
    from done
    returning id, (select count(*) from freed) as freed
  `.execute(db)
  return result.rows.map((r) => String(r.id))
}

/**
 * Puts a failed attempt back as scheduled (or pending when already due) for
 * `runAt`, recording the error. Fenced; returns false when the lease was lost.
 */
export async function retryLater(db: Executor, args: { fence: Fence; runAt: Date; error: JobError }): Promise<boolean> {
  const { fence } = args
  const result = await sql<{ id: string }>`
    with moved as (
      update jobs
      set state        = case when ${args.runAt}::timestamptz <= now() then ${runnableState(sql.ref('store_id'), sql.ref('type'))} else 'scheduled' end,
          run_at       = ${args.runAt},
          locked_by    = null,
          locked_until = null,
          lease_token  = null,
          errors       = ${appendError(sql.ref('errors'), sql`${JSON.stringify(args.error)}::jsonb`)}
      where id = ${fence.id} and attempt = ${fence.attempt} and lease_token = ${fence.leaseToken}::uuid and state = 'running'
      returning id, state, type
    ),
    ${freedPlaces('moved')},
    ${notifyChanges()}
    select id, (select count(*) from notified) as notified, (select count(*) from freed) as freed from moved
  `.execute(db)
  return result.rows.length === 1
}

/**
 * The `freed` CTE for a statement whose CTE `from` (with a `type` column)
 * holds jobs that just stopped running: one wake-up for every worker when
 * any of them is of a type under a concurrency limit. A worker whose claim
 * was cut short by a limit waits for exactly this: a place freed, perhaps by
 * another process. Unlimited types send nothing (their freed slots are local).
 * Reference `freed` from the main query, or PostgreSQL skips the CTE.
 */
export function freedPlaces(from: string): RawBuilder<unknown> {
  return sql`freed as (
      select pg_notify(${NOTIFY_CHANNEL}, '')
      where exists (select 1 from ${sql.table(from)} x where x.type = any(${LIMITED_TYPES}))
    )`
}

/**
 * The `notified` CTE for a statement whose `moved` CTE returns (state) of
 * changed jobs: one notification per kind of change, not per job. Payload ''
 * wakes producers (pending work); 'scheduled' wakes the promoter, which then
 * sleeps until the earliest due job instead of polling.
 */
export function notifyChanges(): RawBuilder<unknown> {
  return sql`notified as (
      select pg_notify(${NOTIFY_CHANNEL}, kind)
      from (select distinct case when state = 'scheduled' then 'scheduled' else '' end as kind from moved) k
    )`
}

/**
 * Returns attempts to the queue without spending them: a snooze (`runAt` in
 * the future) or a graceful shutdown release (`runAt` now). Fenced; returns
 * the ids that matched.
 */
export async function giveBack(db: Executor, args: { fences: ReadonlyArray<Fence>; runAt: Date | null }): Promise<string[]> {
  if (args.fences.length === 0) return []
  const { ids, attempts, tokens } = fenceArrays(args.fences)
  const result = await sql<{ id: string }>`
    with moved as (
      update jobs j
      set state        = case when coalesce(${args.runAt}::timestamptz, now()) <= now() then ${runnableState(sql.ref('j.store_id'), sql.ref('j.type'))} else 'scheduled' end,
          run_at       = coalesce(${args.runAt}::timestamptz, now()),
          attempt      = j.attempt - 1,
          locked_by    = null,
          locked_until = null,
          lease_token  = null
      from unnest(${ids}::bigint[], ${attempts}::int[], ${tokens}::uuid[]) as f(id, attempt, token)
      where j.id = f.id and j.attempt = f.attempt and j.lease_token = f.token and j.state = 'running'
      returning j.id, j.state
    ),
    ${notifyChanges()}
    select id, (select count(*) from notified) as notified from moved
  `.execute(db)
  return result.rows.map((r) => String(r.id))
}

/**
 * Cancels a job that has not started: moves it to history as cancelled.
 * Returns the history row, or undefined when the job was not pending or scheduled.
 */
export async function cancelWaiting(db: Executor, args: { id: string; storeId: string | null }): Promise<JobRow | undefined> {
  const result = await sql<JobRow>`
    with gone as (
      delete from jobs
      where id = ${args.id} and state in ('pending', 'scheduled', 'paused')
        and (${args.storeId}::text is null or store_id = ${args.storeId}::text)
      returning *
    )
    insert into job_history (${HISTORY_COLUMNS})
    select id, type, queue, store_id, user_id, priority, 'cancelled', attempt, max_attempts, payload, dedupe_key,
           progress, errors, null, run_at, created_at, started_at, now()
    from gone
    returning *
  `.execute(db)
  return result.rows[0]
}

/** Asks the worker running a job to abort it; returns the job row, or undefined if it is not running. */
export async function requestCancel(db: Executor, args: { id: string; storeId: string | null }): Promise<JobRow | undefined> {
  const result = await sql<JobRow>`
    update jobs set cancel_requested = true
    where id = ${args.id} and state = 'running'
      and (${args.storeId}::text is null or store_id = ${args.storeId}::text)
    returning *
  `.execute(db)
  return result.rows[0]
}

/** How long partition DDL may wait for its lock before giving up until the next pass. */
const PARTITION_LOCK_TIMEOUT = '500ms'

/**
 * Creates the daily `job_history` partitions for [from, from + days).
 *
 * Attaching a partition locks the default partition and scans it for rows of
 * that day, waiting behind every in-flight completion and holding up new ones
 * while it waits; so each statement gets a short lock timeout and a day that
 * cannot be created now is left for the next pass. A day whose rows already
 * landed in the default partition is skipped (PostgreSQL refuses the overlap);
 * those rows age out through {@link deleteDefaultBefore}. Returns the
 * partitions created.
 */
export async function ensurePartitions(db: Executor, args: { from: Date; days: number }): Promise<string[]> {
  const created: string[] = []
  for (let i = 0; i < args.days; i++) {
    const start = new Date(Date.UTC(args.from.getUTCFullYear(), args.from.getUTCMonth(), args.from.getUTCDate() + i))
    const end = new Date(start.getTime() + 86_400_000)
    const name = `job_history_p${start.toISOString().slice(0, 10).replaceAll('-', '')}`
    const exists = await sql<{ n: number }>`select count(*)::int as n from pg_class where relname = ${name}`.execute(db)
    if ((exists.rows[0]?.n ?? 0) > 0) continue
    const made = await db.transaction().execute(async (trx) => {
      await sql`select set_config('lock_timeout', ${PARTITION_LOCK_TIMEOUT}, true)`.execute(trx)
      const clash = await sql<{ n: number }>`
        select count(*)::int as n from job_history_default where finished_at >= ${start} and finished_at < ${end}
      `.execute(trx)
      if ((clash.rows[0]?.n ?? 0) > 0) return false
      // Identifiers cannot be parameters; `name` is built from a date only.
      await sql`create table if not exists ${sql.id(name)} partition of job_history
                for values from (${sql.lit(start.toISOString())}) to (${sql.lit(end.toISOString())})`.execute(trx)
      return true
    }).catch((err: unknown) => {
      // 55P03 lock_not_available; 23514 a row of that day committed meanwhile: try again next pass.
      const code = (err as { code?: string }).code
      if (code === '55P03' || code === '23514') return false
      throw err
    })
    if (made) created.push(name)
  }
  return created
}

/**
 * Deletes rows older than `before` from the default partition (days that had
 * no partition of their own yet), in bounded batches. Returns the rows deleted.
 */
export async function deleteDefaultBefore(db: Executor, args: { before: Date; batch: number }): Promise<number> {
  let total = 0
  for (;;) {
    const result = await sql`
      delete from job_history_default
      where ctid in (select ctid from job_history_default where finished_at < ${args.before} limit ${args.batch})
    `.execute(db)
    const n = Number(result.numAffectedRows ?? 0)
    total += n
    if (n < args.batch) return total
  }
}

/** Drops daily partitions whose whole day ended before `before`. Returns the partitions dropped. */
export async function dropPartitionsBefore(db: Executor, before: Date): Promise<string[]> {
  const result = await sql<{ name: string }>`
    select c.relname as name
    from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
    where p.relname = 'job_history' and c.relname ~ '^job_history_p[0-9]{8}$'
  `.execute(db)
  const cutoff = before.toISOString().slice(0, 10).replaceAll('-', '')
  const dropped: string[] = []
  for (const { name } of result.rows) {
    const day = name.slice('job_history_p'.length)
    // The partition for day D holds [D, D+1): it is wholly old when D+1 <= before, i.e. D < cutoff day.
    if (day >= cutoff) continue
    const ok = await db.transaction().execute(async (trx) => {
      // Dropping a partition locks the parent: never queue completions behind a long wait.
      await sql`select set_config('lock_timeout', ${PARTITION_LOCK_TIMEOUT}, true)`.execute(trx)
      await sql`drop table if exists ${sql.id(name)}`.execute(trx)
      return true
    }).catch((err: unknown) => {
      if ((err as { code?: string }).code === '55P03') return false
      throw err
    })
    if (ok) dropped.push(name)
  }
  return dropped
}
