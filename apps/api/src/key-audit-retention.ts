import { deleteExpiredApiKeyAudit, type Db } from '@backroom/queue-core'
import type { FastifyBaseLogger } from 'fastify'
import { createPeriodicTask, type PeriodicTask } from './periodic-task.ts'

/** How often each API process deletes expired audit rows when the caller does not say. */
export const DEFAULT_KEY_AUDIT_SWEEP_INTERVAL_MS = 60 * 60_000
const DAY_MS = 86_400_000

/** Options of {@link createKeyAuditRetention}. */
export interface KeyAuditRetentionOptions {
  readonly db: Db
  /** Audit rows older than this many days are deleted (a use row by its hour's start). */
  readonly retentionDays: number
  /** Period of the sweep; null: none (runOnce only). */
  readonly intervalMs: number | null
  readonly log: FastifyBaseLogger
  /** Injected clock (ms). */
  readonly now?: () => number
}

/** Deletes expired API key audit rows on a timer. */
export interface KeyAuditRetention extends PeriodicTask {
  /** Deletes expired rows now; returns how many went. */
  runOnce(): Promise<number>
}

/**
 * API key audit retention (`API_KEY_AUDIT_RETENTION_DAYS`), run by every
 * API process, the processes that write the audit: first a minute after
 * start (or the interval when shorter), then every interval. Several
 * processes sweeping at once only delete the same old rows; each statement
 * is bounded, so a sweep never holds many locks.
 *
 * @example
 * const retention = createKeyAuditRetention({ db, retentionDays: 90, intervalMs: 3_600_000, log })
 */
export function createKeyAuditRetention(options: KeyAuditRetentionOptions): KeyAuditRetention {
  const log = options.log.child({ component: 'key-audit-retention' })
  const now = options.now ?? Date.now

  async function runOnce(): Promise<number> {
    const deleted = await deleteExpiredApiKeyAudit(options.db.kysely, { before: new Date(now() - options.retentionDays * DAY_MS) })
    if (deleted > 0) log.info({ deleted, retentionDays: options.retentionDays }, 'expired key audit rows deleted')
    return deleted
  }

  const sweep =
    options.intervalMs === null
      ? null
      : createPeriodicTask({
          intervalMs: options.intervalMs,
          firstDelayMs: Math.min(options.intervalMs, 60_000),
          run: runOnce,
          log,
          failureMessage: 'key audit sweep failed',
        })

  return {
    runOnce,
    start: () => sweep?.start(),
    stop: async () => sweep?.stop(),
  }
}
