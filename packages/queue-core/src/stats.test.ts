import { beforeEach, describe, expect, it } from 'vitest'
import { ValidationError } from './errors.ts'
import { setStoreWeight } from './settings.ts'
import { fairnessStats, type StoreFairness } from './stats.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()

let nextId = 1

/** A job in history that waited `waitMs` past its run_at (negative: started early) and started `startedAgoMs` ago. */
async function finished(storeId: string, job: { startedAgoMs: number; waitMs: number; finishedAgoMs?: number }): Promise<void> {
  await t.db.pool.query(
    `insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, started_at, finished_at)
     select $1, 'test.noop', 'default', $2, 5, 'completed', 1, '{}', '[]',
            s - $4 * interval '1 ms', s - $4 * interval '1 ms', s, now() - $5 * interval '1 ms'
     from (select now() - $3 * interval '1 ms' as s) x`,
    [nextId++, storeId, job.startedAgoMs, job.waitMs, job.finishedAgoMs ?? 1_000],
  )
}

/** A job still running, started `startedAgoMs` ago after waiting `waitMs`. */
async function running(storeId: string, job: { startedAgoMs: number; waitMs: number }): Promise<void> {
  await t.db.pool.query(
    `insert into jobs (type, store_id, state, attempt, run_at, started_at, lease_token, locked_until)
     select 'test.noop', $1, 'running', 1, s - $3 * interval '1 ms', s, gen_random_uuid(), now() + interval '1 minute'
     from (select now() - $2 * interval '1 ms' as s) x`,
    [storeId, job.startedAgoMs, job.waitMs],
  )
}

const MIN = 60_000

/**
 * Store a (weight 3): 5 jobs, waits 0..4000 (one still running).
 * Store b (no stores row, weight 1): 3 jobs, wait 1500 and two started before their run_at (each counts as 0).
 * Store c (weight 2): 1 job, wait 250, started 50 s ago.
 * Store idle (weight 10) and everything else below: outside the 5-minute window or never started.
 */
async function seed(): Promise<void> {
  await setStoreWeight(t.db.kysely, 'a', 3)
  await setStoreWeight(t.db.kysely, 'c', 2)
  await setStoreWeight(t.db.kysely, 'idle', 10)
  await finished('a', { startedAgoMs: 10_000, waitMs: 0 })
  await finished('a', { startedAgoMs: 20_000, waitMs: 1_000 })
  await finished('a', { startedAgoMs: 30_000, waitMs: 2_000 })
  await finished('a', { startedAgoMs: 40_000, waitMs: 3_000 })
  await running('a', { startedAgoMs: 15_000, waitMs: 4_000 })
  await finished('b', { startedAgoMs: 10_000, waitMs: 1_500 })
  await finished('b', { startedAgoMs: 20_000, waitMs: -300 })
  await finished('b', { startedAgoMs: 30_000, waitMs: -700 })
  await finished('c', { startedAgoMs: 50_000, waitMs: 250 })

  // Started before the window, though finished inside it.
  await finished('a', { startedAgoMs: 6 * MIN, waitMs: 100_000, finishedAgoMs: 30_000 })
  await finished('idle', { startedAgoMs: 6 * MIN, waitMs: 100, finishedAgoMs: MIN })
  // Finished (and so started) long before the window.
  await finished('idle', { startedAgoMs: 11 * MIN, waitMs: 100, finishedAgoMs: 10 * MIN })
  // Running, but since before the window.
  await running('a', { startedAgoMs: 10 * MIN, waitMs: 100_000 })
  // Never started: cancelled while waiting, and live jobs not yet claimed.
  await t.db.pool.query(
    `insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, finished_at)
     values ($1, 'test.noop', 'default', 'idle', 5, 'cancelled', 0, '{}', '[]', now() - interval '1 minute', now() - interval '1 minute', now())`,
    [nextId++],
  )
  await t.db.pool.query(
    `insert into jobs (type, store_id, state, run_at) values
       ('test.noop', 'idle', 'pending', now() - interval '1 minute'),
       ('test.noop', 'idle', 'scheduled', now() + interval '1 minute')`,
  )
}

function expectStore(actual: StoreFairness | undefined, expected: StoreFairness): void {
  expect(actual).toBeDefined()
  const s = actual as StoreFairness
  expect({ storeId: s.storeId, weight: s.weight, started: s.started }).toEqual({
    storeId: expected.storeId,
    weight: expected.weight,
    started: expected.started,
  })
  expect(s.share).toBeCloseTo(expected.share, 9)
  expect(s.weightShare).toBeCloseTo(expected.weightShare, 9)
  expect(s.waitP50Ms).toBeCloseTo(expected.waitP50Ms as number, 6)
  expect(s.waitP99Ms).toBeCloseTo(expected.waitP99Ms as number, 6)
}

const A: StoreFairness = { storeId: 'a', weight: 3, started: 5, share: 5 / 9, weightShare: 3 / 6, waitP50Ms: 2_000, waitP99Ms: 3_960 }
// Waits 0, 0 (floored from -700 and -300), 1500: p99 = 0 + 0.98 * 1500.
const B: StoreFairness = { storeId: 'b', weight: 1, started: 3, share: 3 / 9, weightShare: 1 / 6, waitP50Ms: 0, waitP99Ms: 1_470 }
const C: StoreFairness = { storeId: 'c', weight: 2, started: 1, share: 1 / 9, weightShare: 2 / 6, waitP50Ms: 250, waitP99Ms: 250 }

beforeEach(async () => {
  await t.db.pool.query('delete from jobs; delete from job_history; delete from stores')
})

describe('fairnessStats', () => {
  it('counts finished and running jobs started in the last 5 minutes, busiest store first', async () => {
    await seed()
    const result = await fairnessStats(t.db.kysely)
    expect(result.windowMs).toBe(300_000)
    expect(result.stores.map((s) => s.storeId)).toEqual(['a', 'b', 'c'])
    expectStore(result.stores[0], A)
    expectStore(result.stores[1], B)
    expectStore(result.stores[2], C)
  })

  it('weighs shares against the stores active in a shorter window only', async () => {
    await seed()
    // 25 s: a keeps waits 0, 1000 and the running 4000; b keeps 1500 and 0 (from -300); c drops out.
    const result = await fairnessStats(t.db.kysely, { windowMs: 25_000 })
    expect(result.windowMs).toBe(25_000)
    expect(result.stores.map((s) => s.storeId)).toEqual(['a', 'b'])
    expectStore(result.stores[0], { storeId: 'a', weight: 3, started: 3, share: 3 / 5, weightShare: 3 / 4, waitP50Ms: 1_000, waitP99Ms: 3_940 })
    expectStore(result.stores[1], { storeId: 'b', weight: 1, started: 2, share: 2 / 5, weightShare: 1 / 4, waitP50Ms: 750, waitP99Ms: 1_485 })
  })

  it('returns one store\'s line with shares still taken over every store', async () => {
    await seed()
    const result = await fairnessStats(t.db.kysely, { storeId: 'b' })
    expect(result.stores).toHaveLength(1)
    expectStore(result.stores[0], B)
    // A store that started nothing in the window has no line.
    expect((await fairnessStats(t.db.kysely, { storeId: 'idle' })).stores).toEqual([])
    expect((await fairnessStats(t.db.kysely, { storeId: 'unknown' })).stores).toEqual([])
  })

  it('returns at most `limit` stores, the busiest, ties by store id', async () => {
    await seed()
    await finished('bb', { startedAgoMs: 10_000, waitMs: 0 })
    await finished('bb', { startedAgoMs: 10_000, waitMs: 0 })
    await finished('bb', { startedAgoMs: 10_000, waitMs: 0 })
    const two = await fairnessStats(t.db.kysely, { limit: 2 })
    expect(two.stores.map((s) => s.storeId)).toEqual(['a', 'b'])
    // Shares count bb (12 jobs, weights 3 + 1 + 2 + 1) though it is not shown.
    expect(two.stores[0]?.share).toBeCloseTo(5 / 12, 9)
    expect(two.stores[0]?.weightShare).toBeCloseTo(3 / 7, 9)
    const three = await fairnessStats(t.db.kysely, { limit: 3 })
    expect(three.stores.map((s) => s.storeId)).toEqual(['a', 'b', 'bb'])
  })

  it('returns no stores when nothing started in the window', async () => {
    await setStoreWeight(t.db.kysely, 'idle', 10)
    await finished('idle', { startedAgoMs: 6 * MIN, waitMs: 0, finishedAgoMs: 6 * MIN })
    expect(await fairnessStats(t.db.kysely, {})).toEqual({ windowMs: 300_000, stores: [] })
  })

  it('rejects options out of range with ValidationError', async () => {
    const bad: ReadonlyArray<Record<string, unknown>> = [
      { windowMs: 999 },
      { windowMs: 86_400_001 },
      { windowMs: 1_500.5 },
      { windowMs: Number.NaN },
      { windowMs: '60000' },
      { limit: 0 },
      { limit: 1_001 },
      { limit: 2.5 },
      { storeId: '' },
      { storeId: 'x'.repeat(65) },
      { storeId: 42 },
    ]
    for (const options of bad) {
      await expect(fairnessStats(t.db.kysely, options), JSON.stringify(options)).rejects.toBeInstanceOf(ValidationError)
    }
    // The bounds themselves are accepted.
    await expect(fairnessStats(t.db.kysely, { windowMs: 1_000, limit: 1 })).resolves.toEqual({ windowMs: 1_000, stores: [] })
    await expect(fairnessStats(t.db.kysely, { windowMs: 86_400_000, limit: 1_000, storeId: null })).resolves.toEqual({
      windowMs: 86_400_000,
      stores: [],
    })
  })
})
