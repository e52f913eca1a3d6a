import { setTimeout as sleep } from 'node:timers/promises'
import * as children from './db/cancel-children.ts'
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

/** Live descendants one cascade statement takes at most: keeps each statement short. */
export const CANCEL_CHILDREN_BATCH = 1_000
/** How long a cascade keeps coming back for descendants others hold locked before it gives up. */
export const CANCEL_CHILDREN_WAIT_MS = 10_000

/**
 * Cancels a job and every live job enqueued under it (`parentId`, at any
 * depth). Pending, scheduled or paused: moved to history as cancelled at
 * once (descendants with the error code `parent_cancelled`). Running:
 * cancellation is requested; the worker's heartbeat sees it and aborts the
 * handler's signal, and the job ends as cancelled (error code `cancelled`).
 * Finished: {@link InvalidStateError}, except that cancelling a cancelled job
 * is a no-op for the job and walks its descendants again (so a cascade cut
 * short by an error can be finished by calling again).
 *
 * The cascade runs in bounded statements of the job's store (see
 * cancelChildrenStep). A descendant being claimed at that moment is taken
 * in a later statement and asked to stop, and children enqueued while the
 * parent is cancelled are either refused (the parent is gone or being
 * cancelled) or committed before the cascade looks; so no descendant is
 * left running or waiting. Gives up with an error if others hold some
 * descendants locked for more than {@link CANCEL_CHILDREN_WAIT_MS}.
 *
 * @example
 * const job = await cancelJob(db.kysely, importJobId, { storeId: 'store-42' })
 */
export async function cancelJob(db: Executor, id: string, scope: Scope = PLATFORM): Promise<Job> {
  if (!isBigintId(id)) throw new JobNotFoundError(id)
  const job = await cancelOne(db, id, scope)
  await cancelDescendants(db, { parentId: id, storeId: job.storeId })
  return job
}

async function cancelOne(db: Executor, id: string, scope: Scope): Promise<Job> {
  const cancelled = await history.cancelWaiting(db, { id, storeId: scope.storeId })
  if (cancelled) return toJob(cancelled)
  const running = await history.requestCancel(db, { id, storeId: scope.storeId })
  if (running) {
    // The request does not block enqueues of children that locked the parent
    // before it; wait for them, so the cascade sees what they wrote.
    await children.lockJob(db, { id, storeId: running.store_id })
    return toJob(running)
  }
  const job = await getJob(db, id, scope)
  if (job.state === 'cancelled') return job
  throw new InvalidStateError(id, job.state, 'cancel')
}

/**
 * Repeats bounded cascade steps until one finds no live descendant left to
 * cancel. That last, empty step matters: it reads a snapshot taken after
 * every descendant the earlier steps asked to stop was locked, so it sees
 * any child enqueued under them meanwhile. A step that could take none of
 * what it found (all locked by others, e.g. mid-claim) waits a little first.
 */
async function cancelDescendants(db: Executor, args: { parentId: string; storeId: string }): Promise<void> {
  const deadline = Date.now() + CANCEL_CHILDREN_WAIT_MS
  for (let idle = 0; ; ) {
    const step = await children.cancelChildrenStep(db, { ...args, limit: CANCEL_CHILDREN_BATCH })
    if (step.todo === 0) return
    if (step.cancelled + step.asked > 0) {
      idle = 0
      continue
    }
    if (Date.now() > deadline) {
      throw Object.assign(new Error(`job ${args.parentId} is cancelled but some of its descendants stayed locked; cancel it again`), {
        code: 'cancel_incomplete',
      })
    }
    idle++
    await sleep(Math.min(100, 5 * idle))
  }
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
