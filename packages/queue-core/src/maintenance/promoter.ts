import type { Executor } from '../db/database.ts'
import { promoteDue } from '../db/maintenance.ts'
import type { MaintenanceService } from './service.ts'

/** Scheduled jobs promoted per statement. */
export const DEFAULT_PROMOTE_BATCH = 5_000
/**
 * Longest sleep between promotion passes. The promoter wakes earlier for the
 * next due job it knows of, and on a `scheduled` notification for new ones,
 * so this bounds lateness only when notifications are lost.
 */
export const DEFAULT_PROMOTE_INTERVAL_MS = 30_000

/**
 * Wait before another pass when a due job was left behind because another
 * transaction held its row (SKIP LOCKED): long enough not to spin on the
 * lock, short enough that the job is hardly late.
 */
export const LOCKED_DUE_RETRY_MS = 25

/**
 * The promoter: moves due scheduled jobs (future runAt, backoff, snooze) to
 * pending so the claim index only ever holds runnable work. Leader-only.
 */
export function createPromoter(args: { db: Executor; intervalMs?: number; batch?: number }): MaintenanceService {
  const batch = args.batch ?? DEFAULT_PROMOTE_BATCH
  let nextDueMs: number | undefined
  return {
    name: 'promoter',
    intervalMs: args.intervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS,
    async runOnce() {
      let promoted = 0
      for (;;) {
        const pass = await promoteDue(args.db, { limit: batch })
        promoted += pass.promoted
        // <= 0: a due job was skipped (locked): look again shortly.
        nextDueMs = pass.nextDueMs === null ? undefined : pass.nextDueMs <= 0 ? LOCKED_DUE_RETRY_MS : pass.nextDueMs
        if (pass.promoted < batch) return { promoted }
      }
    },
    nextDelayMs: () => nextDueMs,
  }
}
