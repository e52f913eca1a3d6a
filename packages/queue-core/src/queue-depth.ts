import type { Kysely } from 'kysely'
import type { Database } from './db/database.ts'
import * as depth from './db/queue-depth.ts'
import { ValidationError } from './errors.ts'

/** The statement timeout of {@link queueDepth} when the caller does not say. */
export const DEFAULT_QUEUE_DEPTH_TIMEOUT_MS = 2_000

/** Live jobs of one type, by state. */
export interface TypeDepth {
  readonly type: string
  readonly pending: number
  readonly scheduled: number
  readonly running: number
  readonly paused: number
  /** Age of the oldest pending job in ms (since its creation); null when nothing is pending. */
  readonly oldestPendingMs: number | null
}

/** Options of {@link queueDepth}. */
export interface QueueDepthOptions {
  /** The statement's time limit in ms (default 2,000): past it the read fails instead of waiting. */
  readonly timeoutMs?: number
}

/**
 * Live jobs per type and state, and the age of each type's oldest pending
 * job: the cheap subset of queueHealth that metrics export. One pass over
 * the live table, bounded by a statement timeout; it takes its own
 * transaction, so it needs a `Kysely` (not a caller's transaction).
 *
 * Throws {@link ValidationError} for a timeout that is not a positive integer,
 * and the database's error (a cancelled statement) when the timeout passes.
 *
 * @example
 * const lines = await queueDepth(db.kysely, { timeoutMs: 1_000 })
 */
export async function queueDepth(db: Kysely<Database>, options: QueueDepthOptions = {}): Promise<TypeDepth[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_QUEUE_DEPTH_TIMEOUT_MS
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 2_147_483_647) {
    throw new ValidationError('timeoutMs must be a positive integer', { field: 'timeoutMs' })
  }
  const byType = new Map<string, { type: string; pending: number; scheduled: number; running: number; paused: number; oldestPendingMs: number | null }>()
  for (const row of await depth.depthByTypeAndState(db, { timeoutMs })) {
    const line = byType.get(row.type) ?? { type: row.type, pending: 0, scheduled: 0, running: 0, paused: 0, oldestPendingMs: null }
    line[row.state] = row.jobs
    if (row.state === 'pending') line.oldestPendingMs = Math.max(0, Math.round(row.oldest_ms))
    byType.set(row.type, line)
  }
  return [...byType.values()]
}
