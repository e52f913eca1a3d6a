import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimBatch, extendLeases, setProgress } from '../src/db/claim.ts'
import { connect, type Db } from '../src/db/connect.ts'
import { finishMany, giveBack, retryLater } from '../src/db/history.ts'
import { rescueExpired } from '../src/db/maintenance.ts'
import { enqueue } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { Fence, JobError } from '../src/types.ts'

const t = useTestDatabase()

/** Three "workers" and the leader, each on its own pool: their statements never share a session. */
let workerA: Db
let workerB: Db
let workerC: Db
let leader: Db
beforeAll(() => {
  const open = (name: string) => connect({ connectionString: t.url, max: 2, applicationName: `fencing-${name}` })
  workerA = open('a')
  workerB = open('b')
  workerC = open('c')
  leader = open('leader')
})
afterAll(async () => {
  await Promise.all([workerA, workerB, workerC, leader].map((db) => db?.close()))
})

const NO_DEFAULTS = new Map<string, number>()
let typeSeq = 0

/** A job of a type no other test uses, so each test's claims only ever see its own job. */
async function newJob(): Promise<{ id: string; type: string }> {
  const type = `fence.case${++typeSeq}`
  const { job } = await enqueue(t.db.kysely, { type, storeId: 'store-fence' })
  return { id: job.id, type }
}

async function claimOne(db: Db, type: string, workerId: string, leaseMs: number): Promise<Fence> {
  const rows = await claimBatch(db.kysely, { workerId, limit: 1, leaseMs, types: [type] })
  expect(rows).toHaveLength(1)
  const row = rows[0]!
  return { id: String(row.id), attempt: row.attempt, leaseToken: row.lease_token }
}

/** Waits (on the database clock) until the job's lease is over, then runs one rescue pass as the leader. */
async function expireAndRescue(id: string): Promise<void> {
  await waitFor(async () => (await t.db.pool.query('select locked_until < now() as over from jobs where id = $1', [id])).rows[0]?.over === true, {
    timeoutMs: 5_000,
    intervalMs: 2,
    what: 'the lease to expire',
  })
  expect(await rescueExpired(leader.kysely, { limit: 100, maxAttempts: NO_DEFAULTS })).toMatchObject({ rescued: 1, failed: 0 })
}

const liveRow = async (id: string) => (await t.db.pool.query('select * from jobs where id = $1', [id])).rows[0]
const historyRows = async (id: string) => (await t.db.pool.query('select * from job_history where id = $1', [id])).rows

const anError = (attempt: number): JobError => ({ attempt, at: new Date().toISOString(), code: 'stale', message: 'written by a stale worker' })

/** Every write a worker makes, with `fence`; returns what each reported. */
async function everyWrite(db: Db, fence: Fence) {
  const later = new Date(Date.now() + 60_000)
  return {
    complete: await finishMany(db.kysely, [{ fence, state: 'completed', result: '{"by":"stale"}', error: null }]),
    fail: await finishMany(db.kysely, [{ fence, state: 'failed', result: null, error: anError(fence.attempt) }]),
    cancel: await finishMany(db.kysely, [{ fence, state: 'cancelled', result: null, error: anError(fence.attempt) }]),
    retry: await retryLater(db.kysely, { fence, runAt: later, error: anError(fence.attempt) }),
    snooze: await giveBack(db.kysely, { fences: [fence], runAt: later }),
    release: await giveBack(db.kysely, { fences: [fence], runAt: null }),
    heartbeat: await extendLeases(db.kysely, { fences: [fence], leaseMs: 60_000 }),
    progress: await setProgress(db.kysely, { fence, progress: '{"by":"stale"}' }),
  }
}
const ALL_MISSED = { complete: [], fail: [], cancel: [], retry: false, snooze: [], release: [], heartbeat: [], progress: false }

/** A claims with a 1 ms lease, the lease expires, the leader rescues the job, B claims it again. */
async function reclaimedJob(): Promise<{ id: string; stale: Fence; current: Fence }> {
  const { id, type } = await newJob()
  const stale = await claimOne(workerA, type, 'worker-a', 1)
  await expireAndRescue(id)
  const current = await claimOne(workerB, type, 'worker-b', 60_000)
  expect(current).toMatchObject({ id, attempt: stale.attempt + 1 })
  expect(current.leaseToken).not.toBe(stale.leaseToken)
  return { id, stale, current }
}

describe('fencing of a worker whose lease expired', () => {
  it('cannot complete, fail, cancel, retry, snooze, release, heartbeat or set progress on the attempt that replaced it', async () => {
    const { id, stale } = await reclaimedJob()
    const before = await liveRow(id)
    expect(await everyWrite(workerA, stale)).toEqual(ALL_MISSED)
    expect(await liveRow(id)).toEqual(before)
    expect(await historyRows(id)).toEqual([])
  })

  it('leaves the new holder free to heartbeat, record progress and complete', async () => {
    const { id, stale, current } = await reclaimedJob()
    await everyWrite(workerA, stale)
    expect(await extendLeases(workerB.kysely, { fences: [current], leaseMs: 60_000 })).toEqual([{ id, cancelRequested: false }])
    expect(await setProgress(workerB.kysely, { fence: current, progress: '{"step":"b"}' })).toBe(true)
    expect(await finishMany(workerB.kysely, [{ fence: current, state: 'completed', result: '{"by":"b"}', error: null }])).toEqual([id])
    expect(await liveRow(id)).toBeUndefined()
    const [done, ...more] = await historyRows(id)
    expect(more).toEqual([])
    expect(done).toMatchObject({ state: 'completed', attempt: 2, progress: { step: 'b' }, result: { by: 'b' } })
    expect(done.errors).toEqual([expect.objectContaining({ attempt: 1, code: 'lease_expired' })])
  })

  it('cannot write to its job once it is rescued back to pending, before anyone claims it again', async () => {
    const { id, type } = await newJob()
    const stale = await claimOne(workerA, type, 'worker-a', 1)
    await expireAndRescue(id)
    const before = await liveRow(id)
    expect(before).toMatchObject({ state: 'pending', attempt: 1, lease_token: null, locked_by: null })
    expect(await everyWrite(workerA, stale)).toEqual(ALL_MISSED)
    expect(await liveRow(id)).toEqual(before)
    expect(await historyRows(id)).toEqual([])
    // The job is still fully claimable: the next run is attempt 2.
    expect((await claimOne(workerB, type, 'worker-b', 60_000)).attempt).toBe(2)
  })

  it('is told apart by its lease token when a give-back makes the attempt number repeat', async () => {
    // A → expired and rescued → B claims (attempt 2) → B releases on shutdown (back to attempt 1)
    // → C claims (attempt 2 again). B's fence now has C's id and attempt; only the token differs.
    const { id, type, stale: fenceA, current: fenceB } = await (async () => {
      const r = await reclaimedJob()
      const { rows } = await t.db.pool.query('select type from jobs where id = $1', [r.id])
      return { ...r, type: rows[0].type as string }
    })()
    expect(await giveBack(workerB.kysely, { fences: [fenceB], runAt: null })).toEqual([id])
    const fenceC = await claimOne(workerC, type, 'worker-c', 60_000)
    expect(fenceC.attempt).toBe(fenceB.attempt)
    const before = await liveRow(id)
    expect(await everyWrite(workerB, fenceB)).toEqual(ALL_MISSED)
    expect(await everyWrite(workerA, fenceA)).toEqual(ALL_MISSED)
    expect(await liveRow(id)).toEqual(before)
    expect(await finishMany(workerC.kysely, [{ fence: fenceC, state: 'completed', result: null, error: null }])).toEqual([id])
    expect(await historyRows(id)).toEqual([expect.objectContaining({ state: 'completed', attempt: 2 })])
  })

  it('either completes or is rescued when its completion races the rescuer, never both', async () => {
    const outcomes = { completed: 0, rescued: 0 }
    for (let i = 0; i < 20; i++) {
      const { id, type } = await newJob()
      const fence = await claimOne(workerA, type, 'worker-a', 1)
      await waitFor(async () => (await t.db.pool.query('select locked_until < now() as over from jobs where id = $1', [id])).rows[0]?.over === true, {
        timeoutMs: 5_000,
        intervalMs: 2,
      })
      const [completed, rescue] = await Promise.all([
        finishMany(workerA.kysely, [{ fence, state: 'completed', result: null, error: null }]),
        rescueExpired(leader.kysely, { limit: 100, maxAttempts: NO_DEFAULTS }),
      ])
      const live = await liveRow(id)
      const history = await historyRows(id)
      if (completed.length === 1) {
        outcomes.completed++
        expect(rescue).toMatchObject({ rescued: 0, failed: 0 })
        expect(live).toBeUndefined()
        expect(history).toEqual([expect.objectContaining({ state: 'completed', attempt: 1, errors: [] })])
      } else {
        outcomes.rescued++
        expect(rescue).toMatchObject({ rescued: 1, failed: 0 })
        expect(live).toMatchObject({ state: 'pending', attempt: 1, lease_token: null })
        expect(history).toEqual([])
        // Drain it so the next round's rescue pass sees only its own job.
        const next = await claimOne(workerB, type, 'worker-b', 60_000)
        expect(await finishMany(workerB.kysely, [{ fence: next, state: 'completed', result: null, error: null }])).toEqual([id])
      }
    }
    expect(outcomes.completed + outcomes.rescued).toBe(20)
  })
})
