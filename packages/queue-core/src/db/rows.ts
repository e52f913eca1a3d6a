import type { ClaimedJob, Job, JobError, JobState } from '../types.ts'

/** A row of `jobs` or `job_history` as `pg` returns it (snake_case). */
export interface JobRow {
  readonly id: string
  readonly type: string
  readonly queue: string
  readonly store_id: string
  readonly user_id: string | null
  readonly priority: number
  readonly state: JobState
  readonly attempt: number
  readonly max_attempts: number | null
  readonly payload: unknown
  readonly dedupe_key: string | null
  readonly run_at: Date
  readonly created_at: Date
  readonly started_at: Date | null
  readonly finished_at?: Date | null
  readonly progress: unknown
  readonly errors: unknown
  readonly result?: unknown
}

/** A `jobs` row returned by the claim, with its lease. */
export interface ClaimedJobRow extends JobRow {
  readonly lease_token: string
  readonly locked_by: string
  readonly locked_until: Date
  readonly cancel_requested: boolean
}

/** The one place a row becomes a domain {@link Job}. */
export function toJob<P = unknown>(row: JobRow): Job<P> {
  const errors = Array.isArray(row.errors) ? (row.errors as JobError[]) : []
  return {
    id: String(row.id),
    type: row.type,
    queue: row.queue,
    storeId: row.store_id,
    userId: row.user_id,
    priority: row.priority,
    state: row.state,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    payload: row.payload as P,
    dedupeKey: row.dedupe_key,
    runAt: row.run_at,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at ?? null,
    progress: row.progress ?? null,
    errors,
    lastError: errors.length > 0 ? (errors[errors.length - 1] ?? null) : null,
    result: row.result ?? null,
  }
}

/** A claimed row becomes a {@link ClaimedJob}. */
export function toClaimedJob<P = unknown>(row: ClaimedJobRow): ClaimedJob<P> {
  return {
    ...toJob<P>(row),
    state: 'running',
    leaseToken: row.lease_token,
    lockedBy: row.locked_by,
    lockedUntil: row.locked_until,
    cancelRequested: row.cancel_requested,
  }
}
