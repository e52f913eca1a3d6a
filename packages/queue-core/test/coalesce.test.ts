import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import { claimBatch } from '../src/db/claim.ts'
import { connect } from '../src/db/connect.ts'
import { enqueue } from '../src/enqueue.ts'
import { ValidationError } from '../src/errors.ts'
import { defineHandler } from '../src/handler.ts'
import { configureJobType } from '../src/settings.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'

const t = useTestDatabase()

const openJobs = async (type: string) =>
  (
    await t.db.pool.query<{ id: string; store_id: string; state: string; coalesced: number; payload: { skus?: number[] } }>(
      `select id::text, store_id, state, coalesced, payload from jobs where type = $1 order by id`,
      [type],
    )
  ).rows

describe('coalescing', () => {
  it('folds concurrent enqueues of one store and key into one open job, losing none, and seals it when full', { timeout: 60_000 }, async () => {
    await configureJobType(t.db.kysely, 'test.sync', { coalesce: { strategy: 'append', field: 'skus', maxDelayMs: 60_000, maxBatch: 500 } })
    // 10 enqueuers on their own connections, 50 stock updates each, at the same time.
    const pools = Array.from({ length: 10 }, () => connect({ connectionString: t.url, max: 1 }))
    try {
      await Promise.all(
        pools.map(async (db, w) => {
          for (let i = 0; i < 50; i++) {
            await enqueue(db.kysely, { type: 'test.sync', storeId: 'shop', coalesceKey: 'inventory', payload: { skus: [w * 50 + i] } })
          }
        }),
      )
    } finally {
      await Promise.all(pools.map((p) => p.close()))
    }
    const [one, ...rest] = await openJobs('test.sync')
    expect(rest).toEqual([])
    expect(one).toMatchObject({ store_id: 'shop', state: 'scheduled', coalesced: 500 })
    expect([...one!.payload.skus!].sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => i))

    // The 501st seals the full job (due now) and opens a new one.
    const next = await enqueue(t.db.kysely, { type: 'test.sync', storeId: 'shop', coalesceKey: 'inventory', payload: { skus: [500] } })
    expect(next).toMatchObject({ coalesced: false, job: { state: 'scheduled' } })
    const after = await openJobs('test.sync')
    expect(after.map((j) => [j.state, j.coalesced])).toEqual([['pending', 500], ['scheduled', 1]])

    // Another store, same key: its own job.
    const other = await enqueue(t.db.kysely, { type: 'test.sync', storeId: 'other-shop', coalesceKey: 'inventory', payload: { skus: [1] } })
    expect(other.coalesced).toBe(false)
  })

  it('never folds into a job that is already running', async () => {
    await t.db.pool.query('delete from jobs')
    await configureJobType(t.db.kysely, 'test.merge', { coalesce: { strategy: 'merge' } })
    const first = await enqueue(t.db.kysely, { type: 'test.merge', storeId: 's', coalesceKey: 'k', payload: { a: 1, b: 1 } })
    const folded = await enqueue(t.db.kysely, { type: 'test.merge', storeId: 's', coalesceKey: 'k', payload: { b: 2, c: 3 } })
    expect(folded).toMatchObject({ coalesced: true, job: { id: first.job.id, payload: { a: 1, b: 2, c: 3 } } })
    const claimed = await claimBatch(t.db.kysely, { workerId: 'w', limit: 10, leaseMs: 60_000, types: ['test.merge'] })
    expect(claimed.map((r) => r.id)).toEqual([first.job.id])
    const fresh = await enqueue(t.db.kysely, { type: 'test.merge', storeId: 's', coalesceKey: 'k', payload: { d: 4 } })
    expect(fresh.coalesced).toBe(false)
    expect(fresh.job.id).not.toBe(first.job.id)
    expect(fresh.job.payload).toEqual({ d: 4 })
  })

  it('keeps the newest payload with replace, and rejects keys it cannot honour', async () => {
    await configureJobType(t.db.kysely, 'test.replace', { coalesce: { strategy: 'replace' } })
    await enqueue(t.db.kysely, { type: 'test.replace', storeId: 's', coalesceKey: 'k', payload: { v: 1 } })
    const last = await enqueue(t.db.kysely, { type: 'test.replace', storeId: 's', coalesceKey: 'k', payload: { v: 2 } })
    expect(last).toMatchObject({ coalesced: true, job: { payload: { v: 2 } } })
    await expect(enqueue(t.db.kysely, { type: 'test.plain', storeId: 's', coalesceKey: 'k' })).rejects.toBeInstanceOf(ValidationError)
    await expect(enqueue(t.db.kysely, { type: 'test.replace', storeId: 's', coalesceKey: 'k', dedupeKey: 'd' })).rejects.toBeInstanceOf(ValidationError)
    await expect(configureJobType(t.db.kysely, 'test.bad', { coalesce: { strategy: 'sum' as never } })).rejects.toBeInstanceOf(ValidationError)
  })

  it('runs the folded job once with every update in it, after its delay', { timeout: 30_000 }, async () => {
    await t.db.pool.query('delete from jobs')
    await configureJobType(t.db.kysely, 'test.stock', { coalesce: { strategy: 'append', field: 'skus', maxDelayMs: 300 } })
    const runs: number[][] = []
    const handler = defineHandler({
      type: 'test.stock',
      payload: Type.Object({ skus: Type.Array(Type.Integer()) }),
      run(payload) {
        runs.push(payload.skus)
      },
    })
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [handler], concurrency: 2 })
    await pool.start()
    try {
      for (let i = 0; i < 100; i++) await enqueue(t.db.kysely, { type: 'test.stock', storeId: 'shop', coalesceKey: 'stock', payload: { skus: [i] } })
      await waitFor(() => runs.flat().length === 100, { timeoutMs: 20_000, what: 'all 100 updates handled' })
    } finally {
      await pool.stop()
    }
    // Every update handled exactly once, in far fewer runs than enqueues.
    expect(runs.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(runs.length).toBeLessThanOrEqual(5)
  })
})
