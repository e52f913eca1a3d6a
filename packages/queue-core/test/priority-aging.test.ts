import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { defineHandler } from '../src/handler.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'

const t = useTestDatabase()

const STREAM = 3_000
const STEP = 20
const AGING_MS = 50

describe('priority aging', () => {
  it('runs a low-priority job within the stated bound under a steady stream of urgent work', { timeout: 60_000 }, async () => {
    // One store keeps the queue full of urgent work; another then adds a single low-priority job.
    await enqueueMany(t.db.kysely, Array.from({ length: STREAM }, () => ({ type: 'test.work', storeId: 'stream', priority: 'urgent' as const })))
    const low = await enqueue(t.db.kysely, { type: 'test.work', storeId: 'quiet', priority: 'low' })
    expect(low.job.priority).toBe(10)

    const starts: string[] = []
    const handler = defineHandler({
      type: 'test.work',
      payload: Type.Object({}),
      async run(_payload, { job }) {
        starts.push(job.id)
        await new Promise((r) => setTimeout(r, 1))
      },
    })
    const pool = createWorkerPool({
      db: t.db.kysely,
      connectionString: t.url,
      handlers: [handler],
      concurrency: 4,
      agingStep: STEP,
      maintenanceIntervals: { agingMs: AGING_MS, electionMs: 100 },
    })
    await pool.start()
    try {
      await waitFor(() => starts.includes(low.job.id), { timeoutMs: 30_000, what: 'the low-priority job to start' })
    } finally {
      await pool.stop()
    }
    const passedBy = starts.indexOf(low.job.id)
    // The bound (maintenance/ager.ts): priority 10 reaches urgent once the virtual clock is 9 steps past the job's
    // start time; the stream's store has weight 1 and cost-1 jobs, so that is 9 × STEP urgent jobs claimed after it,
    // plus what one aging interval claims (a few hundred at most here) before the ager looks again.
    const bound = 9 * STEP
    expect(passedBy).toBeLessThanOrEqual(bound + 400)
    // And priority still ordered the work until then: the low job did not jump the queue early.
    expect(passedBy).toBeGreaterThanOrEqual(bound - 2 * STEP)
    // Its declared priority is what its view shows; only the claim order aged.
    const { rows } = await t.db.pool.query('select priority from job_history where id = $1 union all select priority from jobs where id = $1', [low.job.id])
    expect(rows.map((r) => r.priority)).toEqual([10])
  })
})
