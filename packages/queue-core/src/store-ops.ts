import type { Executor } from './db/database.ts'
import * as ops from './db/store-ops.ts'
import { ValidationError } from './errors.ts'
import { checkJobType, checkStoreId } from './validate.ts'

/** Rows one bulk call changes at most, unless told otherwise. */
export const DEFAULT_BULK_LIMIT = 1_000
/** The most one bulk call may change: keeps each call one short statement. */
export const MAX_BULK_LIMIT = 10_000

/** Options of the per-store operations. */
export interface StoreOpOptions {
  /** Only this job type (default: every type). */
  readonly type?: string
  /** At most this many jobs in this call (default 1,000, at most 10,000). */
  readonly limit?: number
}

/** What one bounded call did: `more` is true when jobs were left for another call. */
export interface StoreOpResult {
  readonly count: number
  readonly more: boolean
}

function check(storeId: string, options: StoreOpOptions): { type: string | null; limit: number } {
  checkStoreId(storeId)
  const type = options.type ?? null
  if (type !== null) checkJobType(type)
  const limit = options.limit ?? DEFAULT_BULK_LIMIT
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BULK_LIMIT) {
    throw new ValidationError(`limit must be an integer from 1 to ${MAX_BULK_LIMIT}`, { field: 'limit' })
  }
  return { type, limit }
}

const result = (s: ops.BulkStep): StoreOpResult => ({ count: s.changed, more: s.more })

/**
 * Pauses a store's jobs (or one type of them): none of them starts until
 * resumed. Pending jobs move to `paused` (at most `limit` per call; call again
 * while `more`); jobs that become runnable later (new, due, retried, released)
 * become paused instead. Running jobs finish. Idempotent.
 *
 * @example
 * let r
 * do r = await pauseStore(db.kysely, 'store-42', { type: 'import.products' })
 * while (r.more)
 */
export async function pauseStore(db: Executor, storeId: string, options: StoreOpOptions = {}): Promise<StoreOpResult> {
  const { type, limit } = check(storeId, options)
  return result(await ops.pauseStep(db, { storeId, type: type ?? '', limit }))
}

/**
 * Lifts a pause set by {@link pauseStore} with the same `type`, and moves up
 * to `limit` paused jobs back to pending per call (call again while `more`).
 * They keep their order; their place in the fair order starts from now.
 */
export async function resumeStore(db: Executor, storeId: string, options: StoreOpOptions = {}): Promise<StoreOpResult> {
  const { type, limit } = check(storeId, options)
  return result(await ops.resumeStep(db, { storeId, type: type ?? '', limit }))
}

/** Job states {@link cancelStoreJobs} acts on. */
export type CancellableState = 'pending' | 'scheduled' | 'paused' | 'running'

/**
 * Cancels up to `limit` of a store's jobs in `state`. Pending, scheduled and
 * paused jobs move to history as cancelled at once; for running jobs a
 * cancellation is requested (the worker aborts the handler's signal and the
 * job ends cancelled), and `count` says how many were asked.
 */
export async function cancelStoreJobs(
  db: Executor,
  storeId: string,
  options: StoreOpOptions & { readonly state: CancellableState },
): Promise<StoreOpResult> {
  const { type, limit } = check(storeId, options)
  if (!['pending', 'scheduled', 'paused', 'running'].includes(options.state)) {
    throw new ValidationError('state must be pending, scheduled, paused or running', { field: 'state' })
  }
  if (options.state === 'running') return result(await ops.requestCancelStep(db, { storeId, type, limit }))
  return result(await ops.cancelWaitingStep(db, { storeId, type, states: [options.state], limit }))
}

/**
 * Puts up to `limit` of a store's failed or cancelled jobs back in the queue
 * (same ids, attempts afresh, errors kept). A job whose dedupe key a live job
 * holds is left in history.
 */
export async function retryStoreJobs(
  db: Executor,
  storeId: string,
  options: StoreOpOptions & { readonly state: 'failed' | 'cancelled' },
): Promise<StoreOpResult> {
  const { type, limit } = check(storeId, options)
  if (options.state !== 'failed' && options.state !== 'cancelled') {
    throw new ValidationError('state must be failed or cancelled', { field: 'state' })
  }
  const ids = await ops.retryFinished(db, { ids: null, storeId, type, state: options.state, limit })
  return { count: ids.length, more: ids.length >= limit }
}
