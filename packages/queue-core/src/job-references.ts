import type { Executor } from './db/database.ts'
import * as references from './db/job-references.ts'
import { ValidationError } from './errors.ts'

/** Most references one {@link liveJobReferences} call may check. */
export const MAX_REFERENCE_CHECK = 1_000

/** A value a store's job may name in its payload (e.g. an upload id). */
export interface JobReference {
  readonly storeId: string
  readonly value: string
}

/** Options of {@link liveJobReferences}. */
export interface LiveJobReferencesOptions {
  /** The job type whose payloads are searched, e.g. `import.products`. */
  readonly type: string
  /** The payload's top-level field holding the value, e.g. `uploadId` (compared as text). */
  readonly field: string
  /** The (store, value) pairs to look for: at most 1,000. */
  readonly refs: ReadonlyArray<JobReference>
}

/**
 * Which of `refs` a live job (pending, scheduled, running or paused) of
 * `type` still names in its payload's `field`, for the same store: what a
 * caller must keep before deleting something a job will read (a stored
 * file, an export). Finished jobs do not count. Read-only; a job enqueued
 * after this returns is not seen, so callers delete only what no new job
 * should name any more (e.g. past its retention).
 *
 * Throws {@link ValidationError} for an empty type or field, or too many refs.
 *
 * @example
 * const kept = await liveJobReferences(db.kysely, { type: 'import.products', field: 'uploadId', refs: [{ storeId: 's1', value: '42' }] })
 */
export async function liveJobReferences(db: Executor, options: LiveJobReferencesOptions): Promise<JobReference[]> {
  if (options.type.length === 0 || options.field.length === 0) throw new ValidationError('type and field must not be empty', { field: 'type' })
  if (options.refs.length > MAX_REFERENCE_CHECK) {
    throw new ValidationError(`at most ${MAX_REFERENCE_CHECK} refs per call`, { field: 'refs' })
  }
  if (options.refs.length === 0) return []
  const rows = await references.referencedPairs(db, {
    type: options.type,
    field: options.field,
    storeIds: options.refs.map((r) => r.storeId),
    values: options.refs.map((r) => r.value),
  })
  return rows.map((r) => ({ storeId: r.store_id, value: r.value }))
}
