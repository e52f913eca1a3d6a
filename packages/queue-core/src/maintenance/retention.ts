import type { Executor } from '../db/database.ts'
import { dropPartitionsBefore, ensurePartitions } from '../db/history.ts'
import type { MaintenanceService } from './service.ts'

/** Days of finished jobs kept in job_history. */
export const DEFAULT_RETENTION_DAYS = 14
/** Days of future partitions kept ready. */
export const DEFAULT_PARTITIONS_AHEAD = 3
/** Time between retention passes. */
export const DEFAULT_RETENTION_INTERVAL_MS = 60 * 60_000

/**
 * Retention: keeps daily job_history partitions ready for the next days and
 * drops whole days older than the retention window (DROP TABLE: instant, no
 * dead tuples, no VACUUM). Leader-only.
 */
export function createRetention(args: {
  db: Executor
  retentionDays?: number
  daysAhead?: number
  intervalMs?: number
  now?: () => Date
}): MaintenanceService {
  const now = args.now ?? (() => new Date())
  return {
    name: 'retention',
    intervalMs: args.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS,
    async runOnce() {
      const today = now()
      const created = await ensurePartitions(args.db, { from: today, days: args.daysAhead ?? DEFAULT_PARTITIONS_AHEAD })
      const cutoff = new Date(today.getTime() - (args.retentionDays ?? DEFAULT_RETENTION_DAYS) * 86_400_000)
      const dropped = await dropPartitionsBefore(args.db, cutoff)
      return { created: created.length, dropped: dropped.length }
    },
  }
}
