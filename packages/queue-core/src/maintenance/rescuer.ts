import type { Executor } from '../db/database.ts'
import { rescueExpired } from '../db/maintenance.ts'
import type { MaintenanceService } from './service.ts'

/** Jobs examined per rescue statement. */
export const DEFAULT_RESCUE_BATCH = 1_000
/** Longest sleep between rescue passes; the rescuer wakes earlier when a known lease expires sooner. */
export const DEFAULT_RESCUE_INTERVAL_MS = 60_000

/**
 * The rescuer: returns running jobs whose lease expired to pending (or fails
 * them when their attempts are spent). Leader-only.
 */
export function createRescuer(args: {
  db: Executor
  maxAttempts: ReadonlyMap<string, number>
  intervalMs?: number
  batch?: number
}): MaintenanceService {
  const batch = args.batch ?? DEFAULT_RESCUE_BATCH
  let nextExpiryMs: number | undefined
  return {
    name: 'rescuer',
    intervalMs: args.intervalMs ?? DEFAULT_RESCUE_INTERVAL_MS,
    async runOnce() {
      let rescued = 0
      let failed = 0
      for (;;) {
        const counts = await rescueExpired(args.db, { limit: batch, maxAttempts: args.maxAttempts })
        rescued += counts.rescued
        failed += counts.failed
        // Wake just after the soonest lease could expire (heartbeats usually push it further).
        nextExpiryMs = counts.nextExpiryMs === null ? undefined : counts.nextExpiryMs + 100
        if (counts.rescued + counts.failed < batch) return { rescued, failed }
      }
    },
    nextDelayMs: () => nextExpiryMs,
  }
}
