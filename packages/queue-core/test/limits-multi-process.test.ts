import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { configureJobType, setStoreTypeLimit } from '../src/settings.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { EnqueueSpec } from '../src/types.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const TYPES = ['test.import', 'test.export', 'test.effect'] as const
const STORES = 8
/** Per store: 2 imports at once, store-0 allowed 3 (its own limit over the type's default). */
const IMPORTS_PER_STORE = 2
const STORE0_IMPORTS = 3
/** Across the platform: 5 exports at once. */
const EXPORTS_TOTAL = 5
const JOBS_PER_STORE = { 'test.import': 25, 'test.export': 15, 'test.effect': 15 }
const TOTAL = STORES * (JOBS_PER_STORE['test.import'] + JOBS_PER_STORE['test.export'] + JOBS_PER_STORE['test.effect'])

interface Sample {
  readonly store_id: string
  readonly type: string
  readonly n: number
}

/**
 * Samples the running set as fast as one connection allows, and records every
 * sample that breaks a limit plus the highest count seen per rule. Each sample
 * is one statement, so one snapshot of every worker's claims.
 */
function startObserver(pool: pg.Pool) {
  let stopped = false
  const seen = {
    samples: 0,
    violations: [] as string[],
    maxImportsPerStore: 0,
    maxImportsStore0: 0,
    maxExports: 0,
    maxEffects: 0,
    error: null as string | null,
  }
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await pool.query<Sample>(
        `select store_id, type, count(*)::int as n from jobs where state = 'running' group by store_id, type`,
      )
      seen.samples++
      let exports = 0
      let effects = 0
      for (const r of rows) {
        if (r.type === 'test.import') {
          const limit = r.store_id === 'store-0' ? STORE0_IMPORTS : IMPORTS_PER_STORE
          if (r.n > limit) seen.violations.push(`${r.store_id} ran ${r.n} imports (limit ${limit})`)
          if (r.store_id === 'store-0') seen.maxImportsStore0 = Math.max(seen.maxImportsStore0, r.n)
          else seen.maxImportsPerStore = Math.max(seen.maxImportsPerStore, r.n)
        }
        if (r.type === 'test.export') exports += r.n
        if (r.type === 'test.effect') effects += r.n
      }
      if (exports > EXPORTS_TOTAL) seen.violations.push(`${exports} exports running (limit ${EXPORTS_TOTAL})`)
      seen.maxExports = Math.max(seen.maxExports, exports)
      seen.maxEffects = Math.max(seen.maxEffects, effects)
    }
  })().catch((err: unknown) => {
    seen.error = String(err)
  })
  return {
    async stop() {
      stopped = true
      await loop
      return seen
    },
  }
}

describe('concurrency limits across worker processes', () => {
  it('never runs more than a per-store, store-own or platform limit allows, and runs everything once', { timeout: 180_000 }, async () => {
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    await configureJobType(t.db.kysely, 'test.import', { maxRunningPerStore: IMPORTS_PER_STORE })
    await setStoreTypeLimit(t.db.kysely, 'store-0', 'test.import', STORE0_IMPORTS)
    await configureJobType(t.db.kysely, 'test.export', { maxRunning: EXPORTS_TOTAL })

    // 3 processes × 8 slots: far more slots than the limits allow, so they bind.
    // One process also prefetches: prefetched jobs are running jobs and count.
    const workers = Array.from({ length: 3 }, (_, i) =>
      spawnWorker({ url: t.url, label: `l${i + 1}`, concurrency: 8, prefetch: i === 0 ? 4 : 0, poolMax: 4, types: [...TYPES] }),
    )
    await Promise.all(workers.map((w) => w.message('ready')))

    const observer = startObserver(t.db.pool)
    let seen: Awaited<ReturnType<typeof observer.stop>>
    try {
      // Interleaved by store so every store's imports are waiting at once.
      const specs: EnqueueSpec[] = []
      for (const type of TYPES) {
        for (let k = 0; k < JOBS_PER_STORE[type]; k++) {
          for (let s = 0; s < STORES; s++) specs.push({ type, storeId: `store-${s}`, payload: { sleepMs: 15 } })
        }
      }
      await enqueueMany(t.db.kysely, specs)
      await orDescribe(t.db.pool, workers, () =>
        waitFor(async () => Number((await t.db.pool.query('select count(*) as n from job_history')).rows[0].n) >= TOTAL, {
          timeoutMs: 150_000,
          intervalMs: 100,
          what: `${TOTAL} jobs in job_history`,
        }),
      )
    } finally {
      seen = await observer.stop()
    }
    const exits = await Promise.all(workers.map((w) => terminate(w)))
    expect(exits).toEqual(workers.map(() => ({ code: 0, signal: null })))

    expect(seen.error).toBeNull()
    expect(seen.samples).toBeGreaterThan(100)
    expect(seen.violations).toEqual([])
    // The limits were reached, not just respected: claims fill every place a limit leaves.
    expect(seen.maxExports).toBe(EXPORTS_TOTAL)
    expect(seen.maxImportsPerStore).toBe(IMPORTS_PER_STORE)
    expect(seen.maxImportsStore0).toBe(STORE0_IMPORTS)
    // An unlimited type ran wider than any limit.
    expect(seen.maxEffects).toBeGreaterThan(EXPORTS_TOTAL)

    const effects = await t.db.pool.query(`
      select count(*)::int as n, count(distinct job_id)::int as jobs,
             (select count(*)::int from job_history where state <> 'completed') as not_completed
      from side_effects`)
    expect(effects.rows[0]).toEqual({ n: TOTAL, jobs: TOTAL, not_completed: 0 })
  })
})
