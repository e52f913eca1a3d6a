import type { Executor } from '../db/database.ts'
import { ageWaiting } from '../db/aging.ts'
import { DEFAULT_AGING_INTERVAL_MS, DEFAULT_AGING_STEP } from '../config.ts'
import type { MaintenanceService } from './service.ts'

/** Jobs aged per priority level per statement. */
const AGING_BATCH = 1_000
/** Between passes while no pending job is below urgent. */
const IDLE_INTERVAL_MS = 60_000

/**
 * The ager: raises the claim priority of pending jobs that newer work keeps
 * passing (see ageWaiting), so no priority level starves. Leader-only.
 *
 * The bound: a job of priority p is claimed at priority
 * max(1, p − ⌊Δ / step⌋), where Δ is how far the global virtual clock has
 * moved past its own virtual start time, applied once per interval. Once
 * Δ ≥ (p − 1) · step it competes as urgent, ahead of every job whose start
 * time is later, i.e. everything enqueued after that point. So newer work can
 * pass it for at most (p − 1) · step units of virtual time (with n stores of
 * weight 1 keeping the queue busy, about n · (p − 1) · step jobs of cost 1),
 * plus what is claimed during one interval (and, when the queue was idle
 * before, up to one idle interval of a minute until the ager looks again).
 */
export function createAger(args: { db: Executor; step?: number; intervalMs?: number }): MaintenanceService {
  const step = args.step ?? DEFAULT_AGING_STEP
  const busyMs = args.intervalMs ?? DEFAULT_AGING_INTERVAL_MS
  let waiting = false
  return {
    name: 'ager',
    // Nothing waiting below urgent: a pass a minute notices new work (an idle
    // worker's cost is counted in transactions per minute).
    intervalMs: Math.max(busyMs, IDLE_INTERVAL_MS),
    async runOnce() {
      let aged = 0
      for (;;) {
        const pass = await ageWaiting(args.db, { step, batch: AGING_BATCH })
        aged += pass.aged
        waiting = pass.waiting
        if (pass.aged < AGING_BATCH) return { aged }
      }
    },
    nextDelayMs: () => (waiting ? busyMs : undefined),
  }
}
