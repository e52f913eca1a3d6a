import type { Executor } from '../db/database.ts'
import { deadTuples, vacuumTable, VACUUMED_TABLES, type VacuumedTable } from '../db/vacuum.ts'
import type { MaintenanceService } from './service.ts'

/** Dead row versions in a queue table that trigger a VACUUM. */
export const DEFAULT_VACUUM_DEAD_TUPLES = 20_000
/** Time between dead-tuple checks. */
export const DEFAULT_VACUUM_INTERVAL_MS = 60_000

/**
 * The vacuumer: vacuums the queue's churning tables (jobs, stores, the clock)
 * when their dead row versions pile up. Autovacuum does this too when it is
 * on, with the per-table settings in the migrations; this service covers
 * servers where it is off or lagging, because dead entries at the head of the
 * claim index make every claim walk past them. Leader-only; VACUUM takes no
 * lock that blocks claims or completions.
 */
export function createVacuumer(args: { db: Executor; deadTuples?: number; intervalMs?: number }): MaintenanceService {
  const threshold = args.deadTuples ?? DEFAULT_VACUUM_DEAD_TUPLES
  return {
    name: 'vacuumer',
    intervalMs: args.intervalMs ?? DEFAULT_VACUUM_INTERVAL_MS,
    async runOnce() {
      const dead = await deadTuples(args.db)
      let vacuumed = 0
      for (const table of VACUUMED_TABLES) {
        // The tiny tables (one clock row, one row per store) need far fewer dead versions to matter.
        const limit = table === 'jobs' ? threshold : Math.ceil(threshold / 10)
        if ((dead.get(table) ?? 0) >= limit) {
          await vacuumTable(args.db, table as VacuumedTable)
          vacuumed++
        }
      }
      return { vacuumed }
    },
  }
}
