import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'
import { appendError, HISTORY_COLUMNS } from './history.ts'

/** What one bounded cascade step found and did. */
export interface CascadeStep {
  /** Live descendants still to cancel, as the step's snapshot saw them (at most `limit`). */
  readonly todo: number
  /** Waiting descendants moved to history as cancelled. */
  readonly cancelled: number
  /** Running descendants whose cancellation was requested. */
  readonly asked: number
}

/**
 * Locks one live job FOR UPDATE until the statement (or the caller's
 * transaction) ends, waiting for whoever holds it. After a running
 * parent's cancellation is requested (a non-key update, which enqueues of
 * its children do not block), this waits out every enqueue that locked the
 * parent FOR KEY SHARE before the request (see jobs.insertMany): once it
 * returns, those children are committed, and the cascade's next snapshot
 * sees them. Index: the primary key.
 */
export async function lockJob(db: Executor, args: { id: string; storeId: string }): Promise<void> {
  await sql`select 1 from jobs where id = ${args.id}::bigint and store_id = ${args.storeId} for update`.execute(db)
}

/**
 * One bounded step of a parent's cancellation: takes up to `limit` of its
 * live descendants (children, their children…) of store `storeId` that are
 * waiting (pending, scheduled, paused) or running without a cancellation
 * request yet. Waiting ones move to history as cancelled, with an error
 * `parent_cancelled` naming the job cancelled; running ones get
 * `cancel_requested`, so their worker's heartbeat aborts the run's
 * AbortSignal and the run ends cancelled.
 *
 * Rows are locked FOR UPDATE SKIP LOCKED, so this never waits and never
 * deadlocks with a claim or a batch of completions. A row locked by someone
 * else (a claim taking it right now) is left for the next step: its state
 * is read again then, so a child claimed meanwhile is asked to stop rather
 * than missed. A row whose state changed after the snapshot but before the
 * lock is locked in its new version and handled by that state. The caller
 * repeats steps until one finds nothing to do (see cancelJob).
 *
 * The move to history mirrors history.cancelWaiting, adding the error.
 * Index: jobs_parent_idx (parent_id) where parent_id is not null, one probe
 * per job of the tree, each checked against `storeId`; then the primary key.
 * The walk is a `union` (not `union all`), so even a hand-made cycle of
 * parents ends.
 */
export async function cancelChildrenStep(
  db: Executor,
  args: { parentId: string; storeId: string; limit: number },
): Promise<CascadeStep> {
  const result = await cancelChildrenStatement(args).execute(db)
  return result.rows[0] ?? { todo: 0, cancelled: 0, asked: 0 }
}

/** The statement of {@link cancelChildrenStep}, unexecuted: tests EXPLAIN exactly what runs. */
export function cancelChildrenStatement(args: { parentId: string; storeId: string; limit: number }): RawBuilder<CascadeStep> {
  const error = sql`jsonb_build_object(
    'attempt', g.attempt,
    'at', to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'code', 'parent_cancelled',
    'message', ${`job ${args.parentId}, which this job belongs to, was cancelled`}::text
  )`
  return sql<CascadeStep>`
    with recursive tree (id, state, cancel_requested) as (
      select c.id, c.state, c.cancel_requested from jobs c where c.parent_id = ${args.parentId}::bigint and c.store_id = ${args.storeId}
      union
      select c.id, c.state, c.cancel_requested from tree t join jobs c on c.parent_id = t.id where c.store_id = ${args.storeId}
    ),
    todo as (
      select id from tree
      where state in ('pending', 'scheduled', 'paused') or (state = 'running' and not cancel_requested)
      limit ${args.limit}
    ),
    picked as (
      select j.id, j.state from jobs j
      where j.id in (select id from todo) and j.store_id = ${args.storeId}
        and (j.state in ('pending', 'scheduled', 'paused') or (j.state = 'running' and not j.cancel_requested))
      for update of j skip locked
    ),
    gone as (
      delete from jobs j using picked p where j.id = p.id and p.state <> 'running'
      returning j.*
    ),
    moved as (
      insert into job_history (${HISTORY_COLUMNS})
      select g.id, g.type, g.queue, g.store_id, g.user_id, g.priority, 'cancelled', g.attempt, g.max_attempts, g.payload, g.dedupe_key,
             g.progress, ${appendError(sql.ref('g.errors'), error)}, null, g.run_at, g.created_at, g.started_at, now()
      from gone g
      returning id
    ),
    asked as (
      update jobs j set cancel_requested = true
      from picked p where j.id = p.id and p.state = 'running'
      returning j.id
    )
    select (select count(*) from todo)::int as todo, (select count(*) from moved)::int as cancelled, (select count(*) from asked)::int as asked
  `
}
