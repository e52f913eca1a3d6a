import type { Executor } from './database.ts'
import type { JobRow } from './rows.ts'
import type { FinalState, LiveState } from '../types.ts'

/** One page's filters, already validated by listJobs (all optional except `take`). */
export interface ListFilters {
  readonly storeId: string | null
  readonly type: string | null
  readonly userId: string | null
  /** created_at >= this. */
  readonly createdAfter: Date | null
  /** created_at < this. */
  readonly createdBefore: Date | null
  /** Only ids below this one (the previous page's last id); null: from the newest. */
  readonly beforeId: string | null
  /** Rows to fetch from each table (the page size plus one, to know if more follow). */
  readonly take: number
}

/**
 * Live jobs (`jobs`), newest first by id, matching `filters`; `states`
 * narrows to some live states (null: all).
 *
 * Plan: a backward scan of the primary key, filtered, stopped after `take`
 * rows. The live table holds only unfinished work, so the rows skipped for
 * non-matching filters are bounded by the backlog, not by history.
 */
export async function listLive(db: Executor, filters: ListFilters, states: ReadonlyArray<LiveState> | null): Promise<JobRow[]> {
  const rows = await db
    .selectFrom('jobs')
    .select([
      'id', 'type', 'queue', 'store_id', 'user_id', 'priority', 'state', 'attempt', 'max_attempts', 'payload',
      'dedupe_key', 'run_at', 'created_at', 'started_at', 'progress', 'errors',
    ])
    // JobsTable's state type predates `paused` (migration 0005); the column holds every live state.
    .$if(states !== null, (q) => q.where('state', 'in', states as ReadonlyArray<LiveState> as Array<'pending'>))
    .$if(filters.storeId !== null, (q) => q.where('store_id', '=', filters.storeId as string))
    .$if(filters.type !== null, (q) => q.where('type', '=', filters.type as string))
    .$if(filters.userId !== null, (q) => q.where('user_id', '=', filters.userId as string))
    .$if(filters.createdAfter !== null, (q) => q.where('created_at', '>=', filters.createdAfter as Date))
    .$if(filters.createdBefore !== null, (q) => q.where('created_at', '<', filters.createdBefore as Date))
    .$if(filters.beforeId !== null, (q) => q.where('id', '<', filters.beforeId as string))
    .orderBy('id', 'desc')
    .limit(filters.take)
    .execute()
  return rows as unknown as JobRow[]
}

/**
 * Finished jobs (`job_history`), newest first by id, matching `filters`;
 * `states` narrows to some final states (null: all).
 *
 * Plan: with a store, job_history_store_id_idx (store_id, id) per partition
 * (migration 0010), merged backwards and stopped after `take` rows; without
 * one, job_history_id_idx likewise.
 */
export async function listFinished(db: Executor, filters: ListFilters, states: ReadonlyArray<FinalState> | null): Promise<JobRow[]> {
  const rows = await db
    .selectFrom('job_history')
    .select([
      'id', 'type', 'queue', 'store_id', 'user_id', 'priority', 'state', 'attempt', 'max_attempts', 'payload',
      'dedupe_key', 'run_at', 'created_at', 'started_at', 'finished_at', 'progress', 'errors', 'result',
    ])
    .$if(states !== null, (q) => q.where('state', 'in', states as FinalState[]))
    .$if(filters.storeId !== null, (q) => q.where('store_id', '=', filters.storeId as string))
    .$if(filters.type !== null, (q) => q.where('type', '=', filters.type as string))
    .$if(filters.userId !== null, (q) => q.where('user_id', '=', filters.userId as string))
    .$if(filters.createdAfter !== null, (q) => q.where('created_at', '>=', filters.createdAfter as Date))
    .$if(filters.createdBefore !== null, (q) => q.where('created_at', '<', filters.createdBefore as Date))
    .$if(filters.beforeId !== null, (q) => q.where('id', '<', filters.beforeId as string))
    .orderBy('id', 'desc')
    .limit(filters.take)
    .execute()
  return rows as unknown as JobRow[]
}
