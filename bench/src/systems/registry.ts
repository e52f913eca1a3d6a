// The systems `pnpm bench --systems=` knows, and the variants some suites add.
import type { SystemEntry } from '../harness.ts'
import { backroom } from './backroom.ts'
import { graphileDefaults, graphileFast } from './graphile-worker.ts'
import { pgBossGroups } from './pg-boss-groups.ts'
import { pgBossDefaults, pgBossFast } from './pg-boss.ts'

/**
 * Backroom's fastest settings hold up to 500 claimed jobs per worker beyond its
 * slots (WORKER_PREFETCH), like graphile-worker's documented local queue of
 * 500; `backroom-defaults` claims only for free slots.
 */
export const BACKROOM_FAST_PREFETCH = 500

export const SYSTEMS: ReadonlyArray<SystemEntry> = [
  { name: 'backroom', make: () => backroom({ prefetch: BACKROOM_FAST_PREFETCH }) },
  { name: 'backroom-defaults', make: () => backroom({ name: 'backroom-defaults' }) },
  { name: 'pgboss', make: pgBossFast },
  { name: 'pgboss-defaults', make: pgBossDefaults },
  { name: 'graphile', make: graphileFast },
  { name: 'graphile-defaults', make: graphileDefaults },
]

/**
 * Without --systems: Backroom and each peer in its documented fastest settings.
 * The default-settings variants run only when named: pgboss-defaults polls every
 * 2 s, which caps a drain at concurrency / 2 jobs/s per process (the c=10 p=1
 * quick drain alone would take minutes), and graphile-defaults would add a
 * quarter to a full run that must stay within 30 minutes on 2 cores.
 */
export const DEFAULT_SYSTEMS = ['backroom', 'pgboss', 'graphile']

/** The noisy-neighbour rows for the selected systems: Backroom also without prefetch and each as FIFO, pg-boss with group concurrency. */
export function noisySystems(selected: ReadonlyArray<SystemEntry>): SystemEntry[] {
  return selected.flatMap((s): SystemEntry[] => {
    if (s.name === 'backroom') {
      return [
        s,
        { name: 'backroom-fifo', make: () => backroom({ fifo: true, prefetch: BACKROOM_FAST_PREFETCH }) },
        { name: 'backroom-defaults', make: () => backroom({ name: 'backroom-defaults' }) },
        { name: 'backroom-defaults-fifo', make: () => backroom({ fifo: true, name: 'backroom-defaults-fifo' }) },
      ]
    }
    // Already added with `backroom`.
    if (s.name === 'backroom-defaults' && selected.some((x) => x.name === 'backroom')) return []
    if (s.name === 'pgboss') return [{ name: 'pgboss-groups', make: () => pgBossGroups() }]
    return [s]
  })
}

/** Systems whose adapter has the scale hooks (fillFinished, explainFetch). */
export function withScaleHooks(selected: ReadonlyArray<SystemEntry>): SystemEntry[] {
  return selected.filter((s) => {
    const probe = s.make()
    return typeof probe.fillFinished === 'function' && typeof probe.explainFetch === 'function'
  })
}
