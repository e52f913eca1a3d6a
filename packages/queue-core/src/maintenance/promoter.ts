import type { Executor } from '../db/database.ts'
import { promoteDue } from '../db/maintenance.ts'
import type { MaintenanceService } from './service.ts'

/** Scheduled jobs promoted per statement. */
export const DEFAULT_PROMOTE_BATCH = 5_000
/** Time between promotion passes: the lateness bound of a scheduled or backed-off job. */
export const DEFAULT_PROMOTE_INTERVAL_MS = 1_000

/**
 * The promoter: moves due scheduled jobs (future runAt, backoff, snooze) to
 * pending so the claim index only ever holds runnable work. Leader-only.
 */
export function createPromoter(args: { db: Executor; intervalMs?: number; batch?: number }): MaintenanceService {
  const batch = args.batch ?? DEFAULT_PROMOTE_BATCH
  return {
    name: 'promoter',
    intervalMs: args.intervalMs ?? DEFAULT_PROMOTE_INTERVAL_MS,
    async runOnce() {
      let promoted = 0
      for (;;) {
        const n = await promoteDue(args.db, { limit: batch })
        promoted += n
        if (n < batch) return { promoted }
      }
    },
  }
}
