import { setTimeout as sleep } from 'node:timers/promises'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { cancelJob, getJob } from '../admin.ts'
import { enqueue, enqueueMany } from '../enqueue.ts'
import { PermanentError, snooze } from '../errors.ts'
import { defineHandler, type Handler } from '../handler.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { waitFor } from '../testing/fixtures.ts'
import type { ClaimedJob } from '../types.ts'
import type { RunOutcome } from './executor.ts'
import { createWorkerPool, type WorkerPool } from './worker-pool.ts'

const t = useTestDatabase()
let pools: WorkerPool[] = []

afterEach(async () => {
  await Promise.all(pools.map((p) => p.stop()))
  pools = []
})

/** A pool on the test database that reports every outcome to `outcomes`. */
async function startPool(handlers: Handler[], extra: Partial<Parameters<typeof createWorkerPool>[0]> = {}) {
  const outcomes: Array<{ job: ClaimedJob; outcome: RunOutcome }> = []
  const pool = createWorkerPool({
    db: t.db.kysely,
    connectionString: t.url,
    handlers,
    concurrency: 4,
    pollIntervalMs: 100,
    maintenanceIntervals: { promoteMs: 50, rescueMs: 200, electionMs: 200 },
    onOutcome: (job, outcome) => outcomes.push({ job, outcome }),
    ...extra,
  })
  pools.push(pool)
  await pool.start()
  return { pool, outcomes }
}

const Empty = Type.Object({})

describe('createWorkerPool', () => {
  it('runs a job and moves it to history as completed with its result', async () => {
    const h = defineHandler({ type: 'test.ok', payload: Type.Object({ n: Type.Number() }), run: (p) => ({ doubled: p.n * 2 }) })
    await startPool([h])
    const { job } = await enqueue(t.db.kysely, { type: 'test.ok', storeId: 's1', payload: { n: 21 } })
    const done = await waitFor(async () => {
      const j = await getJob(t.db.kysely, job.id)
      return j.state === 'completed' ? j : null
    })
    expect(done).toMatchObject({ attempt: 1, result: { doubled: 42 }, lastError: null })
    expect(done.finishedAt).toBeInstanceOf(Date)
  })

  it('retries a failing job with backoff, keeping each error, then fails it when attempts run out', async () => {
    let calls = 0
    const h = defineHandler({
      type: 'test.flaky',
      payload: Empty,
      maxAttempts: 3,
      run: () => {
        calls++
        throw new Error(`boom ${calls}`)
      },
    })
    const { outcomes } = await startPool([h])
    const { job } = await enqueue(t.db.kysely, { type: 'test.flaky', storeId: 's1' })
    await waitFor(() => outcomes.some((o) => o.job.id === job.id && o.outcome === 'retried'))
    const between = await getJob(t.db.kysely, job.id)
    expect(between.state).toBe('scheduled')
    // First retry waits 0.5-1 s: backoff, not an immediate rerun.
    expect(between.runAt.getTime() - Date.now()).toBeGreaterThan(200)
    const failed = await waitFor(
      async () => {
        const j = await getJob(t.db.kysely, job.id)
        return j.state === 'failed' ? j : null
      },
      { timeoutMs: 20_000 },
    )
    expect(calls).toBe(3)
    expect(failed.attempt).toBe(3)
    expect(failed.errors.map((e) => e.message)).toEqual(['boom 1', 'boom 2', 'boom 3'])
    expect(outcomes.filter((o) => o.job.id === job.id).map((o) => o.outcome)).toEqual(['retried', 'retried', 'failed'])
  })

  it('fails at once on PermanentError and on a payload that breaks its schema', async () => {
    const h = defineHandler({
      type: 'test.perm',
      payload: Type.Object({ ok: Type.Boolean() }),
      maxAttempts: 5,
      run: () => {
        throw new PermanentError('sku_unknown', { message: 'no such sku' })
      },
    })
    await startPool([h])
    const a = await enqueue(t.db.kysely, { type: 'test.perm', storeId: 's1', payload: { ok: true } })
    const b = await enqueue(t.db.kysely, { type: 'test.perm', storeId: 's1', payload: { ok: 'yes' } })
    for (const [id, code] of [
      [a.job.id, 'sku_unknown'],
      [b.job.id, 'validation_failed'],
    ] as const) {
      const j = await waitFor(async () => {
        const x = await getJob(t.db.kysely, id)
        return x.state === 'failed' ? x : null
      })
      expect(j.attempt).toBe(1)
      expect(j.lastError?.code).toBe(code)
    }
  })

  it('snoozes without spending an attempt', async () => {
    let calls = 0
    const h = defineHandler({
      type: 'test.snooze',
      payload: Empty,
      maxAttempts: 1,
      run: () => {
        calls++
        if (calls === 1) throw snooze(300)
        return 'woke'
      },
    })
    const { outcomes } = await startPool([h])
    const { job } = await enqueue(t.db.kysely, { type: 'test.snooze', storeId: 's1' })
    await waitFor(() => outcomes.some((o) => o.outcome === 'snoozed'))
    const snoozed = await getJob(t.db.kysely, job.id)
    expect(snoozed).toMatchObject({ state: 'scheduled', attempt: 0 })
    const done = await waitFor(async () => {
      const j = await getJob(t.db.kysely, job.id)
      return j.state === 'completed' ? j : null
    })
    // maxAttempts 1 and two runs: the snooze did not count.
    expect(done.attempt).toBe(1)
    expect(calls).toBe(2)
  })

  it('cancels a pending job at once and a running job through its AbortSignal', async () => {
    let sawAbort = false
    const h = defineHandler({
      type: 'test.long',
      payload: Empty,
      run: async (_p, { signal }) => {
        try {
          await sleep(30_000, undefined, { signal })
        } catch (err) {
          sawAbort = true
          throw err
        }
      },
    })
    const waiting = await enqueue(t.db.kysely, { type: 'test.long', storeId: 's1', delayMs: 60_000 })
    expect((await cancelJob(t.db.kysely, waiting.job.id)).state).toBe('cancelled')
    await expect(cancelJob(t.db.kysely, waiting.job.id)).resolves.toMatchObject({ state: 'cancelled' })

    await startPool([h], { leaseMs: 1_500 })
    const { job } = await enqueue(t.db.kysely, { type: 'test.long', storeId: 's1' })
    await waitFor(async () => (await getJob(t.db.kysely, job.id)).state === 'running')
    expect((await cancelJob(t.db.kysely, job.id)).state).toBe('running')
    const done = await waitFor(async () => {
      const j = await getJob(t.db.kysely, job.id)
      return j.state === 'cancelled' ? j : null
    })
    expect(sawAbort).toBe(true)
    expect(done.lastError?.code).toBe('cancelled')
    await expect(cancelJob(t.db.kysely, done.id)).resolves.toMatchObject({ state: 'cancelled' })
  })

  it('aborts a handler at its timeout and retries it', async () => {
    let aborted = 0
    const h = defineHandler({
      type: 'test.slow',
      payload: Empty,
      timeoutMs: 100,
      maxAttempts: 1,
      run: async (_p, { signal }) => {
        signal.addEventListener('abort', () => aborted++)
        await sleep(10_000)
      },
    })
    await startPool([h])
    const { job } = await enqueue(t.db.kysely, { type: 'test.slow', storeId: 's1' })
    const failed = await waitFor(async () => {
      const j = await getJob(t.db.kysely, job.id)
      return j.state === 'failed' ? j : null
    })
    expect(failed.lastError?.code).toBe('timeout')
    expect(aborted).toBe(1)
  })

  it('on stop, releases jobs still running after the grace period without spending their attempt', async () => {
    const h = defineHandler({
      type: 'test.stuck',
      payload: Empty,
      run: async (_p, { signal }) => {
        await sleep(60_000, undefined, { signal })
      },
    })
    const { pool, outcomes } = await startPool([h], { shutdownGraceMs: 100, maintenance: false })
    const jobs = await Promise.all([1, 2, 3].map(() => enqueue(t.db.kysely, { type: 'test.stuck', storeId: 's1' })))
    await waitFor(() => pool.running === 3)
    await pool.stop()
    expect(outcomes.map((o) => o.outcome)).toEqual(['released', 'released', 'released'])
    for (const { job } of jobs) {
      expect(await getJob(t.db.kysely, job.id)).toMatchObject({ state: 'pending', attempt: 0 })
    }
  })

  it('refuses job types it has no handler for, before connecting', () => {
    const h = defineHandler({ type: 'test.ok', payload: Empty, run: () => {} })
    expect(() => createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [h], types: ['test.other'] })).toThrow(
      /no handler for job types: test.other/,
    )
    expect(() => createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [h], concurrency: 0 })).toThrow(/concurrency/)
  })
})

describe('createWorkerPool with prefetch', () => {
  it('holds claimed jobs beyond its slots, runs them all, and gives unstarted ones back on stop', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const h = defineHandler({ type: 'test.gated', payload: Empty, run: () => gate })
    const jobs = await enqueueMany(t.db.kysely, Array.from({ length: 10 }, () => ({ type: 'test.gated', storeId: 's1' })))
    const { pool, outcomes } = await startPool([h], { concurrency: 2, prefetch: 4, maintenance: false, shutdownGraceMs: 50 })
    const running = async () =>
      (await t.db.pool.query<{ n: number }>(`select count(*)::int as n from jobs where state = 'running'`)).rows[0]!.n
    // 2 running + 4 prefetched are claimed (running in the database), the other 4 wait.
    await waitFor(async () => (await running()) === 6)
    expect(pool.running).toBe(2)
    await pool.stop()
    expect(outcomes.map((o) => o.outcome)).toEqual(['released', 'released'])
    const states = await Promise.all(jobs.map(async ({ job }) => getJob(t.db.kysely, job.id)))
    expect(states.every((j) => j.state === 'pending' && j.attempt === 0)).toBe(true)
    release()
  })
})

describe('scheduled work on an idle pool', () => {
  it('runs a delayed job when it falls due, without fast polling (the promoter sleeps until the due time)', async () => {
    const h = defineHandler({ type: 'test.later', payload: Empty, run: () => 'ran' })
    // Default promoter and poll intervals (30 s): only the scheduled notification and the
    // promoter's own next-due time can make this job run on time.
    const pool = createWorkerPool({
      db: t.db.kysely,
      connectionString: t.url,
      handlers: [h],
      maintenanceIntervals: { electionMs: 100 },
    })
    pools.push(pool)
    await pool.start()
    await waitFor(() => pool.isLeader)
    const { job } = await enqueue(t.db.kysely, { type: 'test.later', storeId: 's1', delayMs: 500 })
    expect(job.state).toBe('scheduled')
    const done = await waitFor(
      async () => {
        const j = await getJob(t.db.kysely, job.id)
        return j.state === 'completed' ? j : null
      },
      { timeoutMs: 5_000 },
    )
    expect(done.startedAt!.getTime() - job.runAt.getTime()).toBeGreaterThanOrEqual(0)
    expect(done.startedAt!.getTime() - job.runAt.getTime()).toBeLessThan(2_000)
  })
})
