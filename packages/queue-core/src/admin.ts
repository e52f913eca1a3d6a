import type { Executor } from './db/database.ts'
import * as history from './db/history.ts'
import * as jobs from './db/jobs.ts'
import * as storeOps from './db/store-ops.ts'
import { toJob } from './db/rows.ts'
import { InvalidStateError, JobNotFoundError } from './errors.ts'
import type { Job } from './types.ts'
import { isBigintId } from './validate.ts'

/** Limits a read or an operation to one store; null (platform) sees every store. */
export interface Scope {
  readonly storeId: string | null
}

const PLATFORM: Scope = { storeId: null }

/**
 * A job by id, live or finished. Throws {@link JobNotFoundError} when it does
 * not exist or belongs to another store than `scope` allows (the same error,
 * so a store cannot probe for other stores' ids).
 */
export async function getJob(db: Executor, id: string, scope: Scope = PLATFORM): Promise<Job> {
  if (!isBigintId(id)) throw new JobNotFoundError(id)
  const row = await jobs.getById(db, { id, storeId: scope.storeId })
  if (!row) throw new JobNotFoundError(id)
  return toJob(row)
}

/**
 * Cancels a job. Pending or scheduled: moved to history as cancelled at once.
 * Running: cancellation is requested; the worker's heartbeat sees it and
 * aborts the handler's signal, and the job ends as cancelled. Finished:
 * {@link InvalidStateError}, except that cancelling a cancelled job is a no-op.
 */
export async function cancelJob(db: Executor, id: string, scope: Scope = PLATFORM): Promise<Job> {
  if (!isBigintId(id)) throw new JobNotFoundError(id)
  const cancelled = await history.cancelWaiting(db, { id, storeId: scope.storeId })
  if (cancelled) return toJob(cancelled)
  const running = await history.requestCancel(db, { id, storeId: scope.storeId })
  if (running) return toJob(running)
  const job = await getJob(db, id, scope)
  if (job.state === 'cancelled') return job
  throw new InvalidStateError(id, job.state, 'cancel')
}

/**
 * Puts a failed or cancelled job back in the queue: same id, attempts
 * afresh, its errors kept. {@link InvalidStateError} for any other state
 * (or when a live job now holds its dedupe key); {@link JobNotFoundError}
 * when it does not exist or `scope` may not see it.
 */
export async function retryJob(db: Executor, id: string, scope: Scope = PLATFORM): Promise<Job> {
  if (!isBigintId(id)) throw new JobNotFoundError(id)
  const moved = await storeOps.retryFinished(db, { ids: [id], storeId: scope.storeId, type: null, state: null, limit: 1 })
  const job = await getJob(db, id, scope)
  if (moved.length === 0) throw new InvalidStateError(id, job.state, 'retry')
  return job
}
