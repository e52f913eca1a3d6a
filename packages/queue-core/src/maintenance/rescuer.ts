import type { Executor } from '../db/database.ts'
import { rescueExpired } from '../db/maintenance.ts'
import { nextRunAt } from '../retry.ts'
import type { LeaderLease } from './leader.ts'
import type { MaintenanceService } from './service.ts'

/** Jobs examined per rescue statement. */
export const DEFAULT_RESCUE_BATCH = 1_000
/**
 * Longest sleep between rescue passes. Each pass also renews the leader's
 * lease (see leader.ts), so this is the lease's renewal rhythm as well: with
 * the default lease TTL of 30 s, an idle leader's three rescue passes a
 * minute are all its lease costs (its idle total: these, two promoter
 * passes, one ager and one vacuumer pass, and the producer's two polls).
 */
export const DEFAULT_RESCUE_INTERVAL_MS = 20_000
/**
 * The share of the job lease an idle rescuer may sleep. A job claimed just
 * after a pass expires a whole lease later at the soonest; looking again
 * within this share of it, the rescuer learns of that expiry in time and
 * wakes just after it, instead of a whole interval late.
 */
const LEASE_SHARE = 0.75
/** Wake this long after the soonest known lease expiry, so the expiry has surely passed by the database clock. */
const EXPIRY_MARGIN_MS = 100

/**
 * The rescuer: returns running jobs whose lease expired to the queue (or
 * fails them when their attempts are spent). A job whose lease expired on
 * its previous attempt too comes back after the retry backoff
 * ({@link nextRunAt}), so a job that hangs or kills its worker every time is
 * not handed from worker to worker at full speed. Leader-only.
 *
 * Rescue lag (lease expiry to rescue) is about {@link EXPIRY_MARGIN_MS} for
 * every job whose lease lasts at least three quarters of `leaseMs` (the
 * fleet's WORKER_LEASE_MS; the pool passes its own) or the longest sleep
 * (the interval + 10 % jitter); a shorter lease can wait up to the
 * difference. Measured (test/rescue-lag.test.ts): 105 ms, against 4.6 s
 * with an 8 s interval and a 2 s lease before, and 25.8 s with the old
 * defaults (60 s interval, 30 s lease), where the rescuer slept its whole
 * interval after a pass that saw nothing running.
 */
export function createRescuer(args: {
  db: Executor
  maxAttempts: ReadonlyMap<string, number>
  intervalMs?: number
  batch?: number
  /** The job lease the workers use: bounds how long an idle rescuer sleeps. */
  leaseMs?: number
}): MaintenanceService {
  const batch = args.batch ?? DEFAULT_RESCUE_BATCH
  const longestSleepMs = args.leaseMs === undefined ? undefined : args.leaseMs * LEASE_SHARE
  let nextDelayMs: number | undefined
  return {
    name: 'rescuer',
    intervalMs: args.intervalMs ?? DEFAULT_RESCUE_INTERVAL_MS,
    async runOnce(lease?: LeaderLease) {
      let rescued = 0
      let delayed = 0
      let failed = 0
      for (;;) {
        const sentAt = performance.now()
        const counts = await rescueExpired(args.db, {
          limit: batch,
          maxAttempts: args.maxAttempts,
          lease: lease ?? null,
          backoffMs: (attempt) => nextRunAt(attempt, new Date(0)).getTime(),
        })
        if (lease) {
          if (!counts.leaseHeld) {
            lease.lost()
            return { rescued, delayed, failed }
          }
          // The statement renewed the lease: the leader need not send a renewal of its own.
          lease.renewed(sentAt)
        }
        rescued += counts.rescued
        delayed += counts.delayed
        failed += counts.failed
        // Wake just after the soonest lease could expire (heartbeats usually push it
        // further), and within a share of a lease in any case: a job claimed after
        // this pass is then seen before its lease can run out.
        const expiry = counts.nextExpiryMs === null ? undefined : counts.nextExpiryMs + EXPIRY_MARGIN_MS
        nextDelayMs = expiry === undefined ? longestSleepMs : longestSleepMs === undefined ? expiry : Math.min(expiry, longestSleepMs)
        if (counts.rescued + counts.failed < batch) return { rescued, delayed, failed }
      }
    },
    nextDelayMs: () => nextDelayMs,
  }
}
