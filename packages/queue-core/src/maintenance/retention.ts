import type { Executor } from '../db/database.ts'
import { deleteDefaultBefore, dropPartitionsBefore, ensurePartitions } from '../db/history.ts'
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
      // From tomorrow on: today's completions may already sit in the default
      // partition, and creating a partition for a day in progress would clash
      // with them. A partition is made days before its first row can arrive.
      const tomorrow = new Date(today.getTime() + 86_400_000)
      const created = await ensurePartitions(args.db, { from: tomorrow, days: args.daysAhead ?? DEFAULT_PARTITIONS_AHEAD })
      const cutoff = new Date(today.getTime() - (args.retentionDays ?? DEFAULT_RETENTION_DAYS) * 86_400_000)
      const dropped = await dropPartitionsBefore(args.db, cutoff)
      const deleted = await deleteDefaultBefore(args.db, { before: cutoff, batch: 5_000 })
      return { created: created.length, dropped: dropped.length, deleted }
    },
  }
}
