import type { Executor } from '../db/database.ts'
import { enqueue } from '../enqueue.ts'
import type { EnqueueSpec, Job } from '../types.ts'

/**
 * Inserts one job with sensible defaults (type `test.noop`, store `store-1`)
 * through the real enqueue path; override any field.
 */
export async function insertJob(db: Executor, overrides: Partial<EnqueueSpec> = {}): Promise<Job> {
  const { job } = await enqueue(db, { type: 'test.noop', storeId: 'store-1', payload: {}, ...overrides })
  return job
}

/**
 * Resolves once `check` returns a truthy value (polled), or rejects after
 * `timeoutMs` with `what` in the message. For waiting on another process's
 * effect in the database, where no in-process signal exists.
 */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  for (;;) {
    const value = await check()
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.what ?? 'condition'}`)
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50))
  }
}
