import { setTimeout as sleep } from 'node:timers/promises'
import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import { getJob } from './admin.ts'
import { connect } from './db/connect.ts'
import { drainWithinBudget } from './drain-within-budget.ts'
import { enqueueMany } from './enqueue.ts'
import { PermanentError, ValidationError } from './errors.ts'
import { defineHandler } from './handler.ts'
import { createRescuer } from './maintenance/rescuer.ts'
import { configureJobType } from './settings.ts'
import { useTestDatabase } from './testing/use-test-database.ts'
import { waitFor } from './testing/fixtures.ts'
import type { RunOutcome } from './worker/executor.ts'

const t = useTestDatabase()

const Sleep = Type.Object({ ms: Type.Integer({ minimum: 0 }) })
/** A handler of `type` that sleeps `payload.ms` (aborted with its signal). */
const sleeper = (type: string, run?: () => void) =>
  defineHandler({
    type,
    payload: Sleep,
    async run(p, { signal }) {
      run?.()
      await sleep(p.ms, undefined, { signal })
    },
  })

async function enqueueN(type: string, n: number, payload: unknown = { ms: 0 }, storeId = 's1'): Promise<string[]> {
  const results = await enqueueMany(t.db.kysely, Array.from({ length: n }, () => ({ type, storeId, payload })))
  return results.map((r) => r.job.id)
}

/** `n` finished jobs of `type` in history, each having run `ms`. */
async function ranBefore(type: string, ms: number, n = 5): Promise<void> {
  await t.db.pool.query(
    `insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, started_at, finished_at)
     select 1000000 + g + (random() * 1e6)::int, $1, 'default', 'hist', 5, 'completed', 1, '{}', '[]',
            f - $2 * interval '1 ms', f - $2 * interval '1 ms', f - $2 * interval '1 ms', f
     from generate_series(1, $3) g, (select now() - interval '1 minute' as f) x`,
    [type, ms, n],
  )
}

describe('drainWithinBudget', () => {
  it('runs pending jobs with real handlers and counts processed and failed', async () => {
    const ok = defineHandler({ type: 'd1.ok', payload: Type.Object({}), run: () => ({ fine: true }) })
    const bad = defineHandler({
      type: 'd1.bad',
      payload: Type.Object({}),
      run: () => {
        throw new PermanentError('nope')
      },
    })
    await enqueueN('d1.ok', 3, {})
    const [badId] = await enqueueN('d1.bad', 2, {})
    const outcomes: RunOutcome[] = []
    const r = await drainWithinBudget(t.db.kysely, {
      handlers: [ok, bad],
      maxJobs: 50,
      budgetMs: 10_000,
      defaultEstimateMs: 50,
      onOutcome: (_job, outcome) => outcomes.push(outcome),
    })
    expect(r).toMatchObject({ processed: 5, failed: 2, remaining: 0, claimed: 5, released: 0 })
    expect(outcomes.sort()).toEqual(['completed', 'completed', 'completed', 'failed', 'failed'])
    expect((await getJob(t.db.kysely, badId!)).state).toBe('failed')
  })

  it('never claims more than maxJobs, and reports what is left', async () => {
    await enqueueN('d2.fast', 10)
    const r = await drainWithinBudget(t.db.kysely, { handlers: [sleeper('d2.fast')], maxJobs: 4, budgetMs: 10_000, concurrency: 3, defaultEstimateMs: 50 })
    expect(r).toMatchObject({ claimed: 4, processed: 4, failed: 0, remaining: 6 })
  })

  it('never claims a type whose estimated run time exceeds the budget', async () => {
    await ranBefore('d3.slow', 2_000)
    await enqueueN('d3.slow', 2)
    await enqueueN('d3.fast', 3)
    const r = await drainWithinBudget(t.db.kysely, {
      handlers: [sleeper('d3.slow'), sleeper('d3.fast')],
      maxJobs: 50,
      budgetMs: 1_000,
      defaultEstimateMs: 50,
    })
    expect(r.estimatesMs).toEqual({ 'd3.slow': 2_000, 'd3.fast': 50 })
    expect(r).toMatchObject({ claimed: 3, processed: 3, remaining: 2 })
  })

  it('claims per slot no more than floor(budget / estimate) jobs that take their estimate', async () => {
    await ranBefore('d4.est', 300)
    await enqueueN('d4.est', 6, { ms: 300 })
    const r = await drainWithinBudget(t.db.kysely, { handlers: [sleeper('d4.est')], maxJobs: 50, budgetMs: 1_000, concurrency: 1 })
    expect(r.estimatesMs['d4.est']).toBe(300)
    // Each claim fits the budget left, and each run uses up at least its estimate of it.
    expect(r.claimed).toBeGreaterThanOrEqual(1)
    expect(r.claimed).toBeLessThanOrEqual(Math.floor(1_000 / 300))
    expect(r.processed + r.released).toBe(r.claimed)
    expect(r.remaining).toBe(6 - r.processed)
  })

  it('caps a run’s timeout at the budget left: an overrunning job times out and is retried', async () => {
    await ranBefore('d5.overrun', 100)
    const [id] = await enqueueN('d5.overrun', 1, { ms: 10_000 })
    const r = await drainWithinBudget(t.db.kysely, { handlers: [sleeper('d5.overrun')], maxJobs: 1, budgetMs: 800 })
    expect(r).toMatchObject({ claimed: 1, processed: 1, failed: 1 })
    // Returned at the budget, not when the handler would have finished.
    expect(r.durationMs).toBeLessThan(5_000)
    const job = await getJob(t.db.kysely, id!)
    expect(job.state).toBe('scheduled')
    expect(job.lastError?.code).toBe('timeout')
  })

  it('respects a type’s concurrency limit through the queue’s limited claim', async () => {
    await configureJobType(t.db.kysely, 'd6.limited', { maxRunning: 1 })
    let now = 0
    let most = 0
    const h = defineHandler({
      type: 'd6.limited',
      payload: Type.Object({}),
      async run() {
        most = Math.max(most, ++now)
        await sleep(30)
        now--
      },
    })
    await enqueueN('d6.limited', 4, {})
    const r = await drainWithinBudget(t.db.kysely, { handlers: [h], maxJobs: 10, budgetMs: 10_000, concurrency: 4, defaultEstimateMs: 50 })
    // The other slots find the type at its limit and stop; one slot runs them all, one at a time.
    expect(r).toMatchObject({ processed: 4, remaining: 0 })
    expect(most).toBe(1)
  })

  it('leases for the budget plus margin, so a job whose drain dies comes back through the rescuer', async () => {
    // The drain's own pool, lost mid-run: as if its process were killed, nothing more is written.
    const doomed = connect({ connectionString: t.url, max: 3 })
    let started!: () => void
    const running = new Promise<void>((r) => (started = r))
    const [id] = await enqueueN('d7.dies', 1, { ms: 60_000 })
    const drain = drainWithinBudget(doomed.kysely, {
      handlers: [sleeper('d7.dies', () => started())],
      maxJobs: 1,
      budgetMs: 600,
      leaseMarginMs: 400,
      defaultEstimateMs: 100,
    })
    await running
    await doomed.close()
    await expect(drain).rejects.toThrow()
    const { rows } = await t.db.pool.query<{ state: string; lease_ms: number }>(
      `select state, (extract(epoch from locked_until - started_at) * 1000)::float8 as lease_ms from jobs where id = $1`,
      [id],
    )
    expect(rows[0]!.state).toBe('running')
    // Budget left at the claim (under 600) plus the margin (400).
    expect(rows[0]!.lease_ms).toBeGreaterThan(400)
    expect(rows[0]!.lease_ms).toBeLessThanOrEqual(1_000)
    const rescuer = createRescuer({ db: t.db.kysely, maxAttempts: new Map() })
    await waitFor(async () => (await rescuer.runOnce()).rescued === 1, { timeoutMs: 10_000, what: 'the lease to expire' })
    const job = await getJob(t.db.kysely, id!)
    expect(job).toMatchObject({ state: 'pending', attempt: 1 })
    expect(job.lastError?.code).toBe('lease_expired')
  })

  it('rejects bad options before touching the queue', async () => {
    const h = sleeper('d8.any')
    await expect(drainWithinBudget(t.db.kysely, { handlers: [h], maxJobs: 0, budgetMs: 1_000 })).rejects.toThrow(ValidationError)
    await expect(drainWithinBudget(t.db.kysely, { handlers: [h], maxJobs: 1, budgetMs: 1_000, types: ['d8.other'] })).rejects.toThrow(
      ValidationError,
    )
  })
})
