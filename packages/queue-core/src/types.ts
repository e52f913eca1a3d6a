/**
 * Terminology
 *
 * - **job**: one unit of work: a type, a store, a JSON payload. Live jobs sit in
 *   `jobs`; finished ones in `job_history`.
 * - **type**: the job's kind, `domain.action` (e.g. `sync.inventory`); a handler
 *   is registered per type.
 * - **store**: the tenant a job belongs to, the platform's own identifier (a
 *   string of up to 64 characters). Fairness, limits and isolation are per store.
 * - **attempt**: how many times the job has been claimed; 1 while its first run
 *   is in progress. A snooze or a graceful release gives the attempt back.
 * - **lease**: a running job's claim: `locked_by`, `locked_until` and a random
 *   `lease_token`, extended by heartbeats. An expired lease is rescued.
 * - **fence**: every write by a worker matches (id, attempt, lease token); a
 *   worker whose lease was lost changes nothing and gets a `LeaseLostError`.
 * - **vtime**: the job's virtual start time for fair queuing between stores;
 *   claim order is (priority, vtime).
 * - **history**: `job_history`, finished jobs (completed, failed, cancelled),
 *   partitioned by finish day.
 */

/** States of live jobs (table `jobs`). */
export const LIVE_STATES = ['pending', 'scheduled', 'running', 'paused'] as const
/** States of finished jobs (table `job_history`). */
export const FINAL_STATES = ['completed', 'failed', 'cancelled'] as const
/** Every state a job can be in. */
export const JOB_STATES = [...LIVE_STATES, ...FINAL_STATES] as const

export type LiveState = (typeof LIVE_STATES)[number]
export type FinalState = (typeof FINAL_STATES)[number]
export type JobState = (typeof JOB_STATES)[number]

/** Priority names and their stored values: lower runs first. */
export const PRIORITIES = { urgent: 1, high: 2, normal: 5, low: 10 } as const
export type PriorityName = keyof typeof PRIORITIES
/** A priority by name, or its number from 1 (most urgent) to 10. */
export type Priority = PriorityName | number

/** One failed attempt, as kept on the job (the last few only). */
export interface JobError {
  readonly attempt: number
  readonly at: string
  readonly code: string
  readonly message: string
}

/** A job as the rest of the system sees it, live or finished. */
export interface Job<P = unknown> {
  /** Stable identity (a bigint, as a decimal string). Key external calls on it. */
  readonly id: string
  readonly type: string
  readonly queue: string
  readonly storeId: string
  readonly userId: string | null
  readonly priority: number
  readonly state: JobState
  readonly attempt: number
  /** Null means the handler's default applies. */
  readonly maxAttempts: number | null
  readonly payload: P
  readonly dedupeKey: string | null
  readonly runAt: Date
  readonly createdAt: Date
  readonly startedAt: Date | null
  readonly finishedAt: Date | null
  readonly progress: unknown
  readonly errors: ReadonlyArray<JobError>
  readonly lastError: JobError | null
  readonly result: unknown
}

/** A job this worker holds a lease on. */
export interface ClaimedJob<P = unknown> extends Job<P> {
  readonly state: 'running'
  readonly leaseToken: string
  readonly lockedBy: string
  readonly lockedUntil: Date
  readonly cancelRequested: boolean
}

/** The fence of one attempt: every write by a worker carries it. */
export interface Fence {
  readonly id: string
  readonly attempt: number
  readonly leaseToken: string
}

/** What a caller asks to run. */
export interface EnqueueSpec<P = unknown> {
  readonly type: string
  readonly storeId: string
  readonly payload?: P
  readonly priority?: Priority
  /** Run no earlier than this. Exclusive with `delayMs`. */
  readonly runAt?: Date
  /** Run no earlier than this many milliseconds from now. */
  readonly delayMs?: number
  /** At most one live job per (store, dedupe key); a second enqueue returns the first. */
  readonly dedupeKey?: string
  readonly maxAttempts?: number
  readonly userId?: string
  readonly queue?: string
  /** Fairness cost of this job (default 1): a store is charged cost / weight. */
  readonly cost?: number
  /**
   * A rate-limit key (see setRateLimit): the job is claimed only with a token
   * of that key's bucket, e.g. `marketplace:acme:store-42` for one call to
   * that marketplace for that store. A key without a bucket is unlimited.
   */
  readonly rateKey?: string
  /**
   * Coalesce key, for a job type configured to coalesce (configureJobType
   * `coalesce`): while the store has an open job of this type and key (not yet
   * running), this enqueue folds into it instead of adding a job.
   */
  readonly coalesceKey?: string
  /**
   * The id of a live job of the same store (pending, scheduled, running or
   * paused, its cancellation not requested) this job belongs to: cancelling
   * that job cancels this one too (see cancelJob). Typically a handler
   * splitting its work passes `ctx.job.id`. Not with `coalesceKey`. A parent
   * that is missing, finished, another store's or being cancelled fails the
   * whole batch with a ValidationError (field `parentId`).
   */
  readonly parentId?: string
}

/** The outcome of one enqueue: the job, and whether it already existed. */
export interface EnqueueResult<P = unknown> {
  readonly job: Job<P>
  /** True when a live job with the same (store, dedupe key) was returned instead. */
  readonly deduped: boolean
  /** True when the enqueue folded into an open job of the same coalesce key (returned, with the merged payload). */
  readonly coalesced?: boolean
}
