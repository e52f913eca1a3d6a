import { Type } from 'typebox'
import { afterAll, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { defineHandler } from '../src/handler.ts'
import { configureJobType, setStoreWeight } from '../src/settings.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { EnqueueSpec } from '../src/types.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

/** A handler per type that records which store each run belongs to, in start order. */
function recorder(types: ReadonlyArray<string>, sleepMs: number) {
  const starts: string[] = []
  let running = 0
  let maxRunning = 0
  const handlers = types.map((type) =>
    defineHandler({
      type,
      payload: Type.Object({}),
      async run(_payload, { job }) {
        starts.push(job.storeId)
        running++
        maxRunning = Math.max(maxRunning, running)
        await new Promise((r) => setTimeout(r, sleepMs))
        running--
      },
    }),
  )
  return { handlers, starts, maxRunning: () => maxRunning }
}

describe('fair share between stores', () => {
  it('gives every backlogged store a share within ±10% of its weight, counting job cost', { timeout: 60_000 }, async () => {
    // Weights 1, 2, 3, and a weight-2 store whose jobs cost 2 each (so it gets the job share of weight 1).
    await setStoreWeight(t.db.kysely, 'w1', 1)
    await setStoreWeight(t.db.kysely, 'w2', 2)
    await setStoreWeight(t.db.kysely, 'w3', 3)
    await setStoreWeight(t.db.kysely, 'w2-cost2', 2)
    await configureJobType(t.db.kysely, 'test.heavy', { cost: 2 })
    const expected: Record<string, number> = { w1: 1 / 7, w2: 2 / 7, w3: 3 / 7, 'w2-cost2': 1 / 7 }

    // Each store enqueues far more than the measured window takes from it: all stay backlogged.
    const PER_STORE = 800
    const specs: EnqueueSpec[] = []
    for (const store of ['w1', 'w2', 'w3']) for (let i = 0; i < PER_STORE; i++) specs.push({ type: 'test.light', storeId: store })
    for (let i = 0; i < PER_STORE; i++) specs.push({ type: 'test.heavy', storeId: 'w2-cost2' })
    await enqueueMany(t.db.kysely, specs)

    const rec = recorder(['test.light', 'test.heavy'], 0)
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: rec.handlers, concurrency: 8, maintenance: false })
    const WINDOW = 700
    await pool.start()
    try {
      await waitFor(() => rec.starts.length >= WINDOW, { timeoutMs: 30_000, what: `${WINDOW} starts` })
    } finally {
      await pool.stop()
    }
    const window = rec.starts.slice(0, WINDOW)
    const counts = Object.fromEntries(Object.keys(expected).map((s) => [s, window.filter((x) => x === s).length]))
    for (const [store, share] of Object.entries(expected)) {
      const measured = counts[store]! / WINDOW
      expect(Math.abs(measured - share) / share, `${store}: ${measured.toFixed(3)} of the window vs ${share.toFixed(3)} expected`).toBeLessThanOrEqual(0.1)
    }
    // None ran out of work inside the window, so the shares compare like for like.
    for (const store of Object.keys(expected)) expect(counts[store]!).toBeLessThan(PER_STORE)
  })

  it('is work-conserving: a lone store of tiny weight uses every slot', { timeout: 60_000 }, async () => {
    await t.db.pool.query('delete from jobs')
    await setStoreWeight(t.db.kysely, 'lone', 0.01)
    await enqueueMany(t.db.kysely, Array.from({ length: 120 }, () => ({ type: 'test.lone', storeId: 'lone' })))
    const rec = recorder(['test.lone'], 30)
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: rec.handlers, concurrency: 12, maintenance: false })
    await pool.start()
    try {
      await waitFor(async () => Number((await t.db.pool.query(`select count(*) as n from job_history where store_id = 'lone'`)).rows[0].n) === 120, {
        timeoutMs: 30_000,
        what: '120 lone-store jobs done',
      })
    } finally {
      await pool.stop()
    }
    expect(rec.maxRunning()).toBe(12)
  })
})

describe('fair share across worker processes', () => {
  it('keeps every backlogged store within ±10% of its weight when three processes claim at once', { timeout: 90_000 }, async () => {
    await t.db.pool.query('delete from jobs')
    await t.db.pool.query('delete from job_history')
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    await setStoreWeight(t.db.kysely, 'p1', 1)
    await setStoreWeight(t.db.kysely, 'p2', 2)
    await setStoreWeight(t.db.kysely, 'p3', 3)
    const PER_STORE = 600
    await enqueueMany(
      t.db.kysely,
      ['p1', 'p2', 'p3'].flatMap((store) => Array.from({ length: PER_STORE }, () => ({ type: 'test.effect', storeId: store, payload: { sleepMs: 2 } }))),
    )
    const workers = [1, 2, 3].map((i) => spawnWorker({ url: t.url, label: `f${i}`, concurrency: 4, poolMax: 4 }))
    const WINDOW = 600
    try {
      await Promise.all(workers.map((w) => w.message('ready')))
      await waitFor(async () => Number((await t.db.pool.query('select count(*) as n from job_history')).rows[0].n) >= WINDOW, {
        timeoutMs: 60_000,
        what: `${WINDOW} jobs done`,
      })
    } finally {
      await Promise.all(workers.map((w) => terminate(w)))
    }
    // The first WINDOW jobs to start, across all processes, by the database's clock.
    const { rows } = await t.db.pool.query<{ store_id: string; n: number }>(`
      select store_id, count(*)::int as n from (select store_id from job_history order by started_at, id limit ${WINDOW}) w
      group by store_id`)
    const counts = Object.fromEntries(rows.map((r) => [r.store_id, r.n]))
    for (const [store, weight] of [['p1', 1], ['p2', 2], ['p3', 3]] as const) {
      const share = weight / 6
      const measured = (counts[store] ?? 0) / WINDOW
      expect(Math.abs(measured - share) / share, `${store}: ${measured.toFixed(3)} vs ${share.toFixed(3)}`).toBeLessThanOrEqual(0.1)
      expect(counts[store] ?? 0).toBeLessThan(PER_STORE)
    }
  })
})
