import { ValidationError } from './errors.ts'

/** How long a claimed job's lease lasts before the rescuer may take it back. */
export const DEFAULT_LEASE_MS = 30_000
/** Attempts a job gets when neither the enqueue nor its handler says. */
export const DEFAULT_MAX_ATTEMPTS = 25
/** Jobs a worker pool runs at once. */
export const DEFAULT_CONCURRENCY = 10
/**
 * Safety-net poll while LISTEN is up (jittered ±20 %). Notifications carry
 * the pick-up; this only bounds the delay if one is lost, and keeps an idle
 * worker's cost at a couple of transactions a minute.
 */
export const DEFAULT_POLL_INTERVAL_MS = 30_000
/** Poll interval without LISTEN (transaction-mode poolers): the pick-up latency bound. */
export const DEFAULT_POLL_ONLY_INTERVAL_MS = 1_000
/** How long stop() waits for running jobs before aborting and releasing them. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000
/** A handler's time limit when it does not declare one. */
export const DEFAULT_TIMEOUT_MS = 5 * 60_000
/**
 * Jobs a pool may hold claimed beyond its running ones, so a freed slot starts
 * the next job without a round trip. Kept small: a prefetched job waits on this
 * worker even if another is idle, and holds a lease while it waits.
 */
export const DEFAULT_PREFETCH = 0
/** Completions buffered before a flush is forced. */
export const DEFAULT_COMPLETER_BATCH = 500
/** How long a completion may wait for others to share its flush. */
export const DEFAULT_COMPLETER_DELAY_MS = 2
/** Errors kept on a job (the most recent ones). */
export const MAX_KEPT_ERRORS = 10
/** The channel enqueue notifies and workers listen on. */
export const NOTIFY_CHANNEL = 'backroom_jobs'

/** Options of {@link createWorkerPool} that have defaults. */
export interface WorkerTuning {
  readonly concurrency: number
  readonly prefetch: number
  readonly leaseMs: number
  readonly pollIntervalMs: number
  readonly shutdownGraceMs: number
  readonly completerBatch: number
  readonly completerDelayMs: number
}

/** Throws a ValidationError naming the first bad option; call before opening connections. */
export function validateWorkerTuning(t: WorkerTuning): WorkerTuning {
  const checks: ReadonlyArray<[keyof WorkerTuning, number]> = [
    ['concurrency', 1],
    ['prefetch', 0],
    ['leaseMs', 1_000],
    ['pollIntervalMs', 10],
    ['shutdownGraceMs', 0],
    ['completerBatch', 1],
    ['completerDelayMs', 0],
  ]
  for (const [key, min] of checks) {
    const value = t[key]
    if (!Number.isFinite(value) || value < min) {
      throw new ValidationError(`${key} must be a number >= ${min}`, { option: key, value })
    }
  }
  return t
}

/** How often a worker re-reads which of its job types are under concurrency limits. */
export const LIMITS_REFRESH_MS = 5_000

/**
 * Priority aging (maintenance/ager.ts): a waiting job moves up one priority
 * level for every this many units of virtual time that newer work is served
 * ahead of it (one unit: one job of cost 1 from a store of weight 1).
 */
export const DEFAULT_AGING_STEP = 100

/** How often the leader ages waiting jobs. */
export const DEFAULT_AGING_INTERVAL_MS = 5_000
