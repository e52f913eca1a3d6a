import { describe, expect, it } from 'vitest'
import { enqueue, enqueueMany } from './enqueue.ts'
import { fromPgClient } from './db/connect.ts'
import { ValidationError } from './errors.ts'
import { useTestDatabase } from './testing/use-test-database.ts'
import { getJob } from './admin.ts'

const t = useTestDatabase()

describe('enqueue', () => {
  it('inserts a pending job with defaults and a named priority', async () => {
    const { job, deduped } = await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'store-a', payload: { n: 1 }, priority: 'high' })
    expect(deduped).toBe(false)
    expect(job).toMatchObject({ type: 'test.noop', storeId: 'store-a', state: 'pending', priority: 2, attempt: 0, payload: { n: 1 } })
  })

  it('schedules a job with runAt or delayMs in the future', async () => {
    const a = await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'store-a', delayMs: 60_000 })
    const b = await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'store-a', runAt: new Date(Date.now() + 3_600_000) })
    expect(a.job.state).toBe('scheduled')
    expect(b.job.state).toBe('scheduled')
    expect(a.job.runAt.getTime()).toBeGreaterThan(Date.now() + 50_000)
  })

  it('returns the live job for a repeated dedupe key and says so', async () => {
    const first = await enqueue(t.db.kysely, { type: 'sync.inventory', storeId: 'store-d', dedupeKey: 'inventory' })
    const second = await enqueue(t.db.kysely, { type: 'sync.inventory', storeId: 'store-d', dedupeKey: 'inventory' })
    const otherStore = await enqueue(t.db.kysely, { type: 'sync.inventory', storeId: 'store-e', dedupeKey: 'inventory' })
    expect(first.deduped).toBe(false)
    expect(second).toMatchObject({ deduped: true, job: { id: first.job.id } })
    expect(otherStore.deduped).toBe(false)
    expect(otherStore.job.id).not.toBe(first.job.id)
  })

  it('dedupes inside one bulk batch and against live jobs, keeping input order', async () => {
    const live = await enqueue(t.db.kysely, { type: 'sync.inventory', storeId: 'store-f', dedupeKey: 'k0' })
    const results = await enqueueMany(t.db.kysely, [
      { type: 'sync.inventory', storeId: 'store-f', dedupeKey: 'k1', payload: { i: 0 } },
      { type: 'sync.inventory', storeId: 'store-f', payload: { i: 1 } },
      { type: 'sync.inventory', storeId: 'store-f', dedupeKey: 'k1', payload: { i: 2 } },
      { type: 'sync.inventory', storeId: 'store-f', dedupeKey: 'k0', payload: { i: 3 } },
      { type: 'sync.inventory', storeId: 'store-g', dedupeKey: 'k1', payload: { i: 4 } },
    ])
    expect(results.map((r) => r.deduped)).toEqual([false, false, true, true, false])
    expect(results[0]!.job.payload).toEqual({ i: 0 })
    expect(results[1]!.job.payload).toEqual({ i: 1 })
    expect(results[2]!.job.id).toBe(results[0]!.job.id)
    expect(results[3]!.job.id).toBe(live.job.id)
    expect(results[4]!.job.storeId).toBe('store-g')
    const { rows } = await t.db.pool.query(`select count(*)::int as n from jobs where store_id in ('store-f', 'store-g')`)
    expect(rows[0].n).toBe(4)
  })

  it('leaves no job when the caller rolls back its transaction (kysely)', async () => {
    let id = ''
    await expect(
      t.db.kysely.transaction().execute(async (trx) => {
        id = (await enqueue(trx, { type: 'test.noop', storeId: 'store-tx' })).job.id
        throw new Error('caller changed its mind')
      }),
    ).rejects.toThrow('caller changed its mind')
    await expect(getJob(t.db.kysely, id)).rejects.toMatchObject({ code: 'job_not_found' })
  })

  it('joins a caller pg client transaction: rollback leaves nothing, commit keeps the job', async () => {
    const client = await t.db.pool.connect()
    try {
      await client.query('begin')
      const rolled = await enqueue(client, { type: 'test.noop', storeId: 'store-pg' })
      await client.query('rollback')
      await client.query('begin')
      const kept = await enqueue(fromPgClient(client), { type: 'test.noop', storeId: 'store-pg' })
      await client.query('commit')
      await expect(getJob(t.db.kysely, rolled.job.id)).rejects.toMatchObject({ code: 'job_not_found' })
      expect((await getJob(t.db.kysely, kept.job.id)).state).toBe('pending')
    } finally {
      client.release()
    }
  })

  it('rejects bad specs with a ValidationError naming the field and writes nothing', async () => {
    const before = await t.db.pool.query('select count(*)::int as n from jobs')
    const bad = [
      { type: 'Bad Type', storeId: 's' },
      { type: 'a.b', storeId: '' },
      { type: 'a.b', storeId: 'x'.repeat(65) },
      { type: 'a.b', storeId: 's', priority: 'meh' },
      { type: 'a.b', storeId: 's', priority: 0 },
      { type: 'a.b', storeId: 's', delayMs: 5, runAt: new Date() },
      { type: 'a.b', storeId: 's', maxAttempts: 0 },
      { type: 'a.b', storeId: 's', cost: -1 },
    ]
    for (const spec of bad) {
      await expect(enqueueMany(t.db.kysely, [{ type: 'a.b', storeId: 'ok' }, spec as never])).rejects.toBeInstanceOf(ValidationError)
    }
    const after = await t.db.pool.query('select count(*)::int as n from jobs')
    expect(after.rows[0].n).toBe(before.rows[0].n)
  })
})
