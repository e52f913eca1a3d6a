import { setTimeout as sleep } from 'node:timers/promises'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { getJob } from '../src/admin.ts'
import { defineHandler } from '../src/handler.ts'
import { configureJobType } from '../src/settings.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool, type WorkerPool, type WorkerPoolOptions } from '../src/worker/worker-pool.ts'

const t = useTestDatabase()
let pools: WorkerPool[] = []
afterEach(async () => {
  await Promise.all(pools.map((p) => p.stop()))
  pools = []
})

/** Counts handler runs that overlap: per job, per store, and in all. */
function overlapCounter() {
  const byJob = new Map<string, number>()
  const byStore = new Map<string, number>()
  const peak = { job: 0, store: 0, all: 0 }
  let all = 0
  return {
    peak,
    get live() {
      return all
    },
    enter(jobId: string, storeId: string) {
      byJob.set(jobId, (byJob.get(jobId) ?? 0) + 1)
      byStore.set(storeId, (byStore.get(storeId) ?? 0) + 1)
      all++
      peak.job = Math.max(peak.job, byJob.get(jobId) as number)
      peak.store = Math.max(peak.store, byStore.get(storeId) as number)
      peak.all = Math.max(peak.all, all)
    },
    leave(jobId: string, storeId: string) {
      byJob.set(jobId, (byJob.get(jobId) as number) - 1)
      byStore.set(storeId, (byStore.get(storeId) as number) - 1)
      all--
    },
  }
}

function capturingLogger() {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'info' }, sink), lines }
}

async function startPool(options: Omit<WorkerPoolOptions, 'db' | 'connectionString'>): Promise<WorkerPool> {
  const pool = createWorkerPool({
    db: t.db.kysely,
    connectionString: t.url,
    pollIntervalMs: 100,
    maintenanceIntervals: { promoteMs: 50, rescueMs: 200, electionMs: 200 },
    ...options,
  })
  pools.push(pool)
  await pool.start()
  return pool
}

describe('a handler that ignores its AbortSignal past its timeout', () => {
  it('keeps its job running while it overruns within the grace, so its retry and the store’s other jobs never run beside it', { timeout: 60_000 }, async () => {
    const seen = overlapCounter()
    const h = defineHandler({
      type: 'test.stubborn',
      payload: Type.Object({}),
      timeoutMs: 200,
      maxAttempts: 3,
      async run(_p, { job }) {
        seen.enter(job.id, job.storeId)
        try {
          // The first attempt overruns its timeout by a second and never looks at its signal.
          await sleep(job.attempt === 1 ? 1_200 : 50)
        } finally {
          seen.leave(job.id, job.storeId)
        }
      },
    })
    // One running job of this type per store, on every worker.
    await configureJobType(t.db.kysely, 'test.stubborn', { maxRunningPerStore: 1 })
    const jobs = (await enqueueMany(t.db.kysely, Array.from({ length: 3 }, () => ({ type: 'test.stubborn', storeId: 'store-a' })))).map((r) => r.job)
    // Two workers: a retry freed too early could start on either.
    await startPool({ handlers: [h], concurrency: 2, abortGraceMs: 5_000 })
    await startPool({ handlers: [h], concurrency: 2, abortGraceMs: 5_000 })
    for (const job of jobs) {
      await waitFor(async () => (await getJob(t.db.kysely, job.id)).state === 'completed', { timeoutMs: 30_000, what: `job ${job.id} completed` })
    }
    expect(seen.peak).toMatchObject({ job: 1, store: 1 })
    for (const job of jobs) {
      const done = await getJob(t.db.kysely, job.id)
      expect(done.attempt).toBe(2)
      expect(done.errors).toEqual([expect.objectContaining({ attempt: 1, code: 'timeout' })])
    }
  })

  it('past the grace: its attempt is recorded and logged, but its slot stays taken until it really ends', { timeout: 60_000 }, async () => {
    const seen = overlapCounter()
    const CONCURRENCY = 2
    let recordedWhileRunning = 0
    const h = defineHandler({
      type: 'test.runaway',
      payload: Type.Object({}),
      timeoutMs: 150,
      maxAttempts: 2,
      async run(_p, { job }) {
        seen.enter(job.id, job.storeId)
        try {
          if (job.attempt === 1) {
            await sleep(1_500)
            // Its attempt was recorded (a retry) while it still ran: attempt 1 no longer holds the job.
            const now = await getJob(t.db.kysely, job.id)
            if (!(now.state === 'running' && now.attempt === 1)) recordedWhileRunning++
          }
        } finally {
          seen.leave(job.id, job.storeId)
        }
        return job.attempt
      },
    })
    const jobs = (await enqueueMany(t.db.kysely, Array.from({ length: 5 }, (_, i) => ({ type: 'test.runaway', storeId: `store-${i}` })))).map((r) => r.job)
    const { log, lines } = capturingLogger()
    const pool = await startPool({ handlers: [h], concurrency: CONCURRENCY, abortGraceMs: 300, log })
    let maxRunning = 0
    const watch = setInterval(() => {
      maxRunning = Math.max(maxRunning, pool.running)
    }, 5)
    try {
      for (const job of jobs) {
        await waitFor(async () => (await getJob(t.db.kysely, job.id)).state === 'completed', { timeoutMs: 40_000, what: `job ${job.id} completed` })
      }
      // A retry may complete while its first attempt's handler still lingers.
      await waitFor(() => seen.live === 0, { what: 'every handler to return' })
    } finally {
      clearInterval(watch)
    }
    // Past the grace the job is given up on, so its retry may start beside it on another
    // worker (or on this one, in a slot another handler freed): only the slots are bounded here.
    expect(seen.peak.all).toBe(CONCURRENCY)
    expect(maxRunning).toBe(CONCURRENCY)
    expect(recordedWhileRunning).toBe(jobs.length)
    const abandoned = lines.filter((l) => l.msg === 'handler still running after abort')
    expect(abandoned.map((l) => l.jobId).sort()).toEqual(jobs.map((j) => j.id).sort())
    expect(abandoned.every((l) => l.level === 50 && l.reason === 'timeout')).toBe(true)
    for (const job of jobs) expect((await getJob(t.db.kysely, job.id)).errors).toEqual([expect.objectContaining({ attempt: 1, code: 'timeout' })])
  })
})
