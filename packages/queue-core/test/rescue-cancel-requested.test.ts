import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cancelJob, getJob } from '../src/admin.ts'
import { claimBatch } from '../src/db/claim.ts'
import { connect, type Db } from '../src/db/connect.ts'
import { rescueExpired } from '../src/db/maintenance.ts'
import { enqueue } from '../src/enqueue.ts'
import { defineHandler } from '../src/handler.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'

/**
 * A job is cancelled while it runs; before the running worker's heartbeat
 * sees the request, that worker dies (simulated: it claimed with a 1 ms lease
 * and never writes again). The leader rescues the expired lease. The user
 * asked for the job to stop: it must end as cancelled, not run again.
 */
const t = useTestDatabase()

let deadWorker: Db
let leader: Db
beforeAll(() => {
  deadWorker = connect({ connectionString: t.url, max: 1, applicationName: 'dead-worker' })
  leader = connect({ connectionString: t.url, max: 1, applicationName: 'leader' })
})
afterAll(async () => {
  await Promise.all([deadWorker, leader].map((db) => db?.close()))
})

describe('rescue of a job whose cancellation was requested', () => {
  it('ends the job as cancelled instead of running it again', async () => {
    const { job } = await enqueue(t.db.kysely, { type: 'test.cancellable', storeId: 'store-c' })
    expect(await claimBatch(deadWorker.kysely, { workerId: 'dead', limit: 1, leaseMs: 1, types: ['test.cancellable'] })).toHaveLength(1)
    // Running: cancellation can only be requested; the (dead) worker would have acted on it.
    expect((await cancelJob(t.db.kysely, job.id)).state).toBe('running')
    await waitFor(async () => (await t.db.pool.query('select locked_until < now() as over from jobs where id = $1', [job.id])).rows[0]?.over === true, {
      timeoutMs: 5_000,
      intervalMs: 2,
    })
    await rescueExpired(leader.kysely, { limit: 10, maxAttempts: new Map() })

    // Whatever the rescue did, a live worker now gets its chance at the job.
    const ran: string[] = []
    const pool = createWorkerPool({
      db: t.db.kysely,
      connectionString: t.url,
      handlers: [defineHandler({ type: 'test.cancellable', payload: Type.Object({}), run: (_p, ctx) => void ran.push(ctx.job.id) })],
      maintenance: false,
      pollIntervalMs: 50,
    })
    await pool.start()
    try {
      await waitFor(async () => (await t.db.pool.query('select 1 from job_history where id = $1', [job.id])).rowCount === 1, {
        timeoutMs: 10_000,
        what: 'the job to finish',
      })
    } finally {
      await pool.stop()
    }
    expect(ran, 'the handler ran again after the cancellation was requested').toEqual([])
    expect((await getJob(t.db.kysely, job.id)).state).toBe('cancelled')
  })
})
