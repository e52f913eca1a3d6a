import { afterAll, describe, expect, it } from 'vitest'
import { getJob, retryJob } from '../src/admin.ts'
import { claimBatch } from '../src/db/claim.ts'
import { promoteDue } from '../src/db/maintenance.ts'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { InvalidStateError, ValidationError } from '../src/errors.ts'
import { cancelStoreJobs, pauseStore, resumeStore, retryStoreJobs } from '../src/store-ops.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const states = async (storeId: string) => {
  const { rows } = await t.db.pool.query<{ state: string; n: number }>(
    `select state, count(*)::int as n from jobs where store_id = $1 group by state order by state`,
    [storeId],
  )
  return Object.fromEntries(rows.map((r) => [r.state, r.n]))
}
const claimAll = (workerId: string) => claimBatch(t.db.kysely, { workerId, limit: 1_000, leaseMs: 60_000, types: null })

describe('pause and resume a store', () => {
  it('holds back every job of the store in bounded steps, new and due ones too, and resumes them', async () => {
    await enqueueMany(t.db.kysely, [
      ...Array.from({ length: 30 }, () => ({ type: 'test.x', storeId: 'a' })),
      ...Array.from({ length: 10 }, () => ({ type: 'test.y', storeId: 'a' })),
      ...Array.from({ length: 10 }, () => ({ type: 'test.x', storeId: 'b' })),
    ])
    expect(await pauseStore(t.db.kysely, 'a', { limit: 25 })).toEqual({ count: 25, more: true })
    expect(await pauseStore(t.db.kysely, 'a', { limit: 25 })).toEqual({ count: 15, more: false })
    expect(await states('a')).toEqual({ paused: 40 })

    // While paused, new work and work falling due is held back too.
    const fresh = await enqueue(t.db.kysely, { type: 'test.x', storeId: 'a' })
    expect(fresh.job.state).toBe('paused')
    await enqueue(t.db.kysely, { type: 'test.x', storeId: 'a', delayMs: 1 })
    await new Promise((r) => setTimeout(r, 10))
    await promoteDue(t.db.kysely, { limit: 100 })
    expect(await states('a')).toEqual({ paused: 42 })

    // Claims see only the other store.
    const claimed = await claimAll('w1')
    expect(new Set(claimed.map((r) => r.store_id))).toEqual(new Set(['b']))

    // Resuming moves them back with their virtual times moved up to the clock.
    await t.db.pool.query('update queue_clock set vtime = 1000')
    expect(await resumeStore(t.db.kysely, 'a', { limit: 30 })).toEqual({ count: 30, more: true })
    expect(await resumeStore(t.db.kysely, 'a', { limit: 30 })).toEqual({ count: 12, more: false })
    expect(await states('a')).toEqual({ pending: 42 })
    const { rows } = await t.db.pool.query(`select min(vtime) as lo from jobs where store_id = 'a'`)
    expect(Number(rows[0].lo)).toBeGreaterThanOrEqual(1000)
    const after = await enqueue(t.db.kysely, { type: 'test.x', storeId: 'a' })
    expect(after.job.state).toBe('pending')
    expect((await claimAll('w2')).filter((r) => r.store_id === 'a')).toHaveLength(43)
  })

  it('pauses one job type of a store and leaves the rest running', async () => {
    await t.db.pool.query('delete from jobs')
    await enqueueMany(t.db.kysely, [
      ...Array.from({ length: 5 }, () => ({ type: 'test.x', storeId: 'c' })),
      ...Array.from({ length: 5 }, () => ({ type: 'test.y', storeId: 'c' })),
    ])
    expect(await pauseStore(t.db.kysely, 'c', { type: 'test.x' })).toEqual({ count: 5, more: false })
    expect((await enqueue(t.db.kysely, { type: 'test.x', storeId: 'c' })).job.state).toBe('paused')
    expect((await enqueue(t.db.kysely, { type: 'test.y', storeId: 'c' })).job.state).toBe('pending')
    // A store-wide pause on top: resuming the type alone does not release what the store-wide pause covers.
    await pauseStore(t.db.kysely, 'c')
    await resumeStore(t.db.kysely, 'c', { type: 'test.x' })
    expect(await states('c')).toEqual({ paused: 12 })
    await resumeStore(t.db.kysely, 'c')
    expect(await states('c')).toEqual({ pending: 12 })
  })

  it('keeps a paused store idle across worker processes, then runs each job once after resume', { timeout: 60_000 }, async () => {
    await t.db.pool.query('delete from jobs')
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    await enqueueMany(t.db.kysely, Array.from({ length: 200 }, (_, i) => ({ type: 'test.effect', storeId: i % 2 === 0 ? 'held' : 'free', payload: {} })))
    await pauseStore(t.db.kysely, 'held')
    const workers = [1, 2].map((i) => spawnWorker({ url: t.url, label: `p${i}`, concurrency: 5, poolMax: 4 }))
    await Promise.all(workers.map((w) => w.message('ready')))
    try {
      const done = async (store: string) =>
        Number((await t.db.pool.query(`select count(*) as n from job_history where store_id = $1`, [store])).rows[0].n)
      await waitFor(async () => (await done('free')) === 100, { timeoutMs: 30_000, what: 'the free store done' })
      // New work for the held store while the workers are idle: held back as well.
      await enqueue(t.db.kysely, { type: 'test.effect', storeId: 'held', payload: {} })
      await new Promise((r) => setTimeout(r, 300))
      expect(await done('held')).toBe(0)
      expect(await states('held')).toEqual({ paused: 101 })

      await resumeStore(t.db.kysely, 'held')
      await waitFor(async () => (await done('held')) === 101, { timeoutMs: 30_000, what: 'the held store done' })
    } finally {
      await Promise.all(workers.map((w) => terminate(w)))
    }
    const { rows } = await t.db.pool.query(`select count(*)::int as n, count(distinct job_id)::int as jobs from side_effects`)
    expect(rows[0]).toEqual({ n: 201, jobs: 201 })
  })
})

describe('cancel and retry a store\'s jobs', () => {
  it('cancels waiting jobs in bounded steps and asks running ones to stop', async () => {
    await t.db.pool.query('delete from jobs')
    await enqueueMany(t.db.kysely, [
      ...Array.from({ length: 7 }, () => ({ type: 'test.x', storeId: 'd' })),
      ...Array.from({ length: 3 }, () => ({ type: 'test.x', storeId: 'd', delayMs: 60_000 })),
      ...Array.from({ length: 4 }, () => ({ type: 'test.o', storeId: 'other' })),
    ])
    const running = await claimBatch(t.db.kysely, { workerId: 'w', limit: 2, leaseMs: 60_000, types: ['test.x'] })
    expect(running.every((r) => r.store_id === 'd')).toBe(true)

    expect(await cancelStoreJobs(t.db.kysely, 'd', { state: 'pending', limit: 3 })).toEqual({ count: 3, more: true })
    expect(await cancelStoreJobs(t.db.kysely, 'd', { state: 'pending', limit: 3 })).toEqual({ count: 2, more: false })
    expect(await cancelStoreJobs(t.db.kysely, 'd', { state: 'scheduled' })).toEqual({ count: 3, more: false })
    expect(await cancelStoreJobs(t.db.kysely, 'd', { state: 'running' })).toEqual({ count: 2, more: false })
    expect(await states('d')).toEqual({ running: 2 })
    const asked = await t.db.pool.query(`select count(*)::int as n from jobs where store_id = 'd' and cancel_requested`)
    expect(asked.rows[0].n).toBe(2)
    expect(await states('other')).toEqual({ pending: 4 })
    const history = await t.db.pool.query(`select state, count(*)::int as n from job_history where store_id = 'd' group by state`)
    expect(history.rows).toEqual([{ state: 'cancelled', n: 8 }])
  })

  it('retries cancelled and failed jobs with their ids, attempts afresh, errors kept', async () => {
    const ids = (await t.db.pool.query(`select id::text from job_history where store_id = 'd' order by id`)).rows.map((r) => r.id as string)
    expect(await retryStoreJobs(t.db.kysely, 'd', { state: 'cancelled', limit: 5 })).toEqual({ count: 5, more: true })
    expect(await retryStoreJobs(t.db.kysely, 'd', { state: 'cancelled', limit: 5 })).toEqual({ count: 3, more: false })
    const back = await t.db.pool.query(`select id::text, state, attempt from jobs where id = any($1::bigint[]) order by id`, [ids])
    expect(back.rows.map((r) => r.id)).toEqual(ids)
    expect(back.rows.every((r) => r.state === 'pending' && r.attempt === 0)).toBe(true)
    expect((await t.db.pool.query(`select count(*)::int as n from job_history where store_id = 'd'`)).rows[0].n).toBe(0)

    // One job: failed → pending; a completed or live job cannot be retried.
    await t.db.pool.query(`
      insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, finished_at)
      values (900001, 'test.x', 'default', 'e', 5, 'failed', 3, '{}', '[{"code":"boom"}]', now(), now(), now()),
             (900002, 'test.x', 'default', 'e', 5, 'completed', 1, '{}', '[]', now(), now(), now())`)
    const retried = await retryJob(t.db.kysely, '900001')
    expect(retried).toMatchObject({ id: '900001', state: 'pending', attempt: 0, errors: [{ code: 'boom' }] })
    await expect(retryJob(t.db.kysely, '900002')).rejects.toBeInstanceOf(InvalidStateError)
    await expect(retryJob(t.db.kysely, '900001')).rejects.toBeInstanceOf(InvalidStateError)
    // Another store's key cannot see it.
    await expect(retryJob(t.db.kysely, '900002', { storeId: 'not-e' })).rejects.toMatchObject({ code: 'job_not_found' })
    expect((await getJob(t.db.kysely, '900002')).state).toBe('completed')
  })

  it('rejects bad input with ValidationError', async () => {
    await expect(pauseStore(t.db.kysely, '')).rejects.toBeInstanceOf(ValidationError)
    await expect(pauseStore(t.db.kysely, 's', { limit: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(pauseStore(t.db.kysely, 's', { limit: 10_001 })).rejects.toBeInstanceOf(ValidationError)
    await expect(cancelStoreJobs(t.db.kysely, 's', { state: 'completed' as never })).rejects.toBeInstanceOf(ValidationError)
    await expect(retryStoreJobs(t.db.kysely, 's', { state: 'pending' as never })).rejects.toBeInstanceOf(ValidationError)
  })
})
