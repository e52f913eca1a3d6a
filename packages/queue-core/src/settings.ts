import type { Executor } from './db/database.ts'
import * as settings from './db/settings.ts'
import { ValidationError } from './errors.ts'
import { checkJobType, checkStoreId } from './validate.ts'

function checkLimit(field: string, value: number | null | undefined): void {
  if (value === null || value === undefined) return
  if (!Number.isInteger(value) || value < 1 || value > 1_000_000) {
    throw new ValidationError(`${field} must be an integer from 1 to 1,000,000, or null for no limit`, { field })
  }
}

function checkPositive(field: string, value: number | null | undefined): void {
  if (value === null || value === undefined) return
  if (!Number.isFinite(value) || value <= 0 || value > 1e6) throw new ValidationError(`${field} must be a number above 0`, { field })
}

/**
 * Sets a store's fairness weight (default 1; e.g. from its plan). When every
 * store is backlogged, each gets a share of the workers proportional to its
 * weight. Applies to jobs enqueued from now on: a waiting job keeps the
 * virtual start time it was given.
 */
export async function setStoreWeight(db: Executor, storeId: string, weight: number): Promise<void> {
  checkStoreId(storeId)
  checkPositive('weight', weight)
  await settings.upsertStoreWeight(db, { storeId, weight })
}

/**
 * Caps a store's live jobs (pending, scheduled and running); null removes the
 * cap. An enqueue that would pass it throws StoreCapacityError and writes
 * nothing.
 */
export async function setStoreLiveJobCap(db: Executor, storeId: string, cap: number | null): Promise<void> {
  checkStoreId(storeId)
  checkLimit('cap', cap)
  await settings.upsertStoreLiveCap(db, { storeId, cap })
}

/**
 * An operator's settings for a job type: its fairness cost (over the cost
 * its handler declares), the most jobs of it running at once across the
 * platform, and the most per store (a default every store gets unless
 * setStoreTypeLimit says otherwise). Omitted fields stay as they are; null
 * clears one. Limits apply from every worker's next claim.
 *
 * `coalesce` makes new jobs of a store with the same `coalesceKey` fold into
 * its open job (not yet running) instead of queueing another: e.g. stock
 * updates appended into one sync job that waits up to a second for more.
 *
 * @example
 * await configureJobType(db.kysely, 'import.products', { maxRunningPerStore: 2, cost: 5 })
 * await configureJobType(db.kysely, 'sync.inventory', { coalesce: { strategy: 'append', field: 'skus', maxDelayMs: 1_000, maxBatch: 500 } })
 * await configureJobType(db.kysely, 'export.marketplace', { maxRunning: 50 })
 */
export async function configureJobType(db: Executor, type: string, columns: settings.JobTypeColumns): Promise<void> {
  checkJobType(type)
  checkPositive('cost', columns.cost)
  checkLimit('maxRunning', columns.maxRunning)
  checkLimit('maxRunningPerStore', columns.maxRunningPerStore)
  const c = columns.coalesce
  if (c) {
    if (!['append', 'merge', 'replace'].includes(c.strategy)) {
      throw new ValidationError('coalesce.strategy must be append, merge or replace', { field: 'coalesce.strategy' })
    }
    if (c.field !== undefined && (typeof c.field !== 'string' || c.field.length === 0 || c.field.length > 128)) {
      throw new ValidationError('coalesce.field must be a field name', { field: 'coalesce.field' })
    }
    if (c.maxDelayMs !== undefined && (!Number.isInteger(c.maxDelayMs) || c.maxDelayMs < 0 || c.maxDelayMs > 86_400_000)) {
      throw new ValidationError('coalesce.maxDelayMs must be whole milliseconds from 0 to a day', { field: 'coalesce.maxDelayMs' })
    }
    checkLimit('coalesce.maxBatch', c.maxBatch)
  }
  await settings.upsertJobType(db, { type, ...columns })
}

/** One store's own running limit for a job type, over the type's per-store default; null removes it. */
export async function setStoreTypeLimit(db: Executor, storeId: string, type: string, maxRunning: number | null): Promise<void> {
  checkStoreId(storeId)
  checkJobType(type)
  checkLimit('maxRunning', maxRunning)
  await settings.upsertStoreTypeLimit(db, { storeId, type, maxRunning })
}
