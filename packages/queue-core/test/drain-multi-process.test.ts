import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { EnqueueSpec } from '../src/types.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const JOBS = 20_000
const STORES = 50
const PROCESSES = 4
const BATCH = 2_000

const count = async (pool: pg.Pool, text: string): Promise<number> => Number((await pool.query(text)).rows[0].n)

/**
 * Polls while the workers drain and records what no instant may show: a job
 * with two side effects, or (once everything is enqueued) a job that is in
 * neither or both of `jobs` and `job_history` — each poll is one statement,
 * so one snapshot, and the move to history must be atomic in it.
 */
function startObserver(pool: pg.Pool) {
  let enqueuedAll = false
  let stopped = false
  const seen = { polls: 0, maxDuplicates: 0, conservationBreaks: [] as number[], error: null as string | null }
  const loop = (async () => {
    while (!stopped) {
      // Read the flag before the query: a poll sent before the last batch committed may return after it.
      const allEnqueued = enqueuedAll
      const { rows } = await pool.query<{ dup: string; live: string; done: string }>(`
        select (select count(*) - count(distinct job_id) from side_effects) as dup,
               (select count(*) from jobs) as live,
               (select count(*) from job_history) as done`)
      const r = rows[0]!
      seen.polls++
      seen.maxDuplicates = Math.max(seen.maxDuplicates, Number(r.dup))
      const total = Number(r.live) + Number(r.done)
      if (allEnqueued && total !== JOBS) seen.conservationBreaks.push(total)
      await new Promise((res) => setTimeout(res, 100))
    }
  })().catch((err: unknown) => {
    seen.error = String(err)
  })
  return {
    enqueuedAll() {
      enqueuedAll = true
    },
    /** Stops polling (idempotent) and returns what was seen. */
    async stop() {
      stopped = true
      await loop
      return seen
    },
  }
}

describe('worker pools in separate processes', () => {
  it('drains 20,000 jobs across 4 processes, each exactly once', { timeout: 240_000 }, async () => {
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    // Half the pools also prefetch (hold claimed jobs beyond their slots), the other half do not.
    const workers = Array.from({ length: PROCESSES }, (_, i) =>
      spawnWorker({ url: t.url, label: `p${i + 1}`, concurrency: 15, prefetch: i % 2 === 0 ? 0 : 10, poolMax: 6 }),
    )
    await Promise.all(workers.map((w) => w.message('ready')))

    // Enqueue while the pools already run: claims race the inserts and the store clocks.
    const observer = startObserver(t.db.pool)
    let seen: Awaited<ReturnType<typeof observer.stop>>
    try {
      for (let start = 0; start < JOBS; start += BATCH) {
        const specs: EnqueueSpec[] = Array.from({ length: BATCH }, (_, k) => ({
          type: 'test.effect',
          storeId: `store-${String((start + k) % STORES).padStart(2, '0')}`,
          payload: {},
        }))
        const results = await enqueueMany(t.db.kysely, specs)
        expect(results.filter((r) => r.deduped)).toHaveLength(0)
      }
      observer.enqueuedAll()
      await orDescribe(t.db.pool, workers, () =>
        waitFor(async () => (await count(t.db.pool, 'select count(*) as n from job_history')) >= JOBS, {
          timeoutMs: 180_000,
          intervalMs: 200,
          what: `${JOBS} jobs in job_history`,
        }),
      )
    } finally {
      seen = await observer.stop()
    }
    const exits = await Promise.all(workers.map((w) => terminate(w)))

    // Every process shut down cleanly on SIGTERM and saw only completions (no lost lease, no retry).
    expect(exits, workers.map((w) => `--- ${w.label}\n${w.stderr()}`).join('\n')).toEqual(workers.map(() => ({ code: 0, signal: null })))
    const reports = await Promise.all(workers.map((w) => w.message('stopped', 1_000)))
    for (const r of reports) expect(Object.keys(r.outcomes as object).filter((k) => k !== 'completed')).toEqual([])

    const history = await t.db.pool.query(`
      select state, count(*)::int as n, min(attempt) as min_attempt, max(attempt) as max_attempt,
             count(*) filter (where errors <> '[]'::jsonb)::int as with_errors
      from job_history group by state`)
    expect(history.rows).toEqual([{ state: 'completed', n: JOBS, min_attempt: 1, max_attempt: 1, with_errors: 0 }])
    expect(await count(t.db.pool, 'select count(*) as n from jobs')).toBe(0)

    const effects = await t.db.pool.query(`
      select count(*)::int as n, count(distinct job_id)::int as jobs, min(attempt) as min_attempt, max(attempt) as max_attempt,
             (select count(*)::int from job_history h where not exists (select 1 from side_effects s where s.job_id = h.id)) as missing
      from side_effects`)
    expect(effects.rows[0]).toEqual({ n: JOBS, jobs: JOBS, min_attempt: 1, max_attempt: 1, missing: 0 })

    // The work was shared, and each process's own count agrees with the side effects it wrote.
    const perWorker = await t.db.pool.query<{ worker: string; n: number }>(
      'select worker, count(*)::int as n from side_effects group by worker order by worker',
    )
    expect(perWorker.rows.length).toBeGreaterThan(1)
    const reported = workers
      .map((w, i) => ({ worker: w.label, n: (reports[i]!.outcomes as { completed?: number }).completed ?? 0 }))
      .filter((r) => r.n > 0)
    expect(perWorker.rows).toEqual(reported)

    // The concurrent observer never saw a job run twice, nor a job missing or doubled mid-move.
    expect(seen.error).toBeNull()
    expect(seen.polls).toBeGreaterThan(0)
    expect(seen.maxDuplicates).toBe(0)
    expect(seen.conservationBreaks).toEqual([])
  })
})
