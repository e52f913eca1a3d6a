import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { claimBatch } from '../src/db/claim.ts'
import { retryLater } from '../src/db/history.ts'
import { enqueue } from '../src/enqueue.ts'
import { createPromoter } from '../src/maintenance/promoter.ts'
import { createRescuer } from '../src/maintenance/rescuer.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, terminate, type TsChild } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_RUNS, spawnMaintenanceWorker } from './fixtures/maintenance-worker.ts'

/**
 * A poison job: whichever worker runs it dies (its handler SIGKILLs the
 * process), so the job's lease expires on every attempt and the rescuer
 * takes it back. It must not go from worker to worker at full speed: from
 * its second lease expiry in a row it comes back only after the retry
 * backoff, and after its last attempt it fails with `lease_expired`.
 * Meanwhile other stores' jobs keep running on the workers that are left
 * (a dead worker is replaced, as a supervisor would).
 */
const t = useTestDatabase()
afterEach(killAllChildren)

const LEASE_MS = 1_000
const MAX_ATTEMPTS = 4
/** nextRunAt(attempt) waits between half and all of 1 s × 2^(attempt − 1). */
const backoffFloorMs = (attempt: number) => 500 * 2 ** (attempt - 1)

describe('a job that kills every worker it runs on', () => {
  it('comes back with backoff from its second lease expiry and fails after exactly its attempts, while other work flows', { timeout: 180_000 }, async () => {
    await t.db.pool.query(CREATE_RUNS)
    // One process runs maintenance only; three others run the jobs, so one is
    // up when the poison job comes back even while killed ones are replaced.
    const leader = spawnMaintenanceWorker({ url: t.url, label: 'leader', types: ['test.idle'], rescueMs: 200, promoteMs: 100, electionMs: 300 })
    expect((await leader.message('ready')).leader).toBe(true)
    let spawned = 0
    const runner = () =>
      spawnMaintenanceWorker({ url: t.url, label: `r${++spawned}`, maintenance: false, leaseMs: LEASE_MS, concurrency: 2, types: ['test.poison', 'test.effect'] })
    let runners = [runner(), runner(), runner()]
    await Promise.all(runners.map((r) => r.message('ready')))
    const all = () => [leader, ...runners]

    const { job: poison } = await enqueue(t.db.kysely, {
      type: 'test.poison',
      storeId: 'store-poison',
      maxAttempts: MAX_ATTEMPTS,
      payload: { killWorker: true },
    })
    // Other stores keep enqueueing small jobs while the poison job lives; dead workers are replaced.
    const others: string[] = []
    const dead = new Set<TsChild>()
    const poisonDone = async () => (await t.db.pool.query('select 1 from job_history where id = $1', [poison.id])).rowCount === 1
    await orDescribe(t.db.pool, all(), async () => {
      const deadline = Date.now() + 90_000
      while (!(await poisonDone())) {
        if (Date.now() > deadline) throw new Error('the poison job did not finish within 90 s')
        runners = runners.map((r) => {
          if (r.process.exitCode === null && r.process.signalCode === null) return r
          dead.add(r)
          return runner()
        })
        const { job } = await enqueue(t.db.kysely, { type: 'test.effect', storeId: `store-${others.length % 5}`, payload: { sleepMs: 20 } })
        others.push(job.id)
        await new Promise((r) => setTimeout(r, 100))
      }
    })
    // Each poison attempt killed the runner it ran on, and nothing else did.
    const deaths = [...dead].map((c) => `${c.label}: ${JSON.stringify(c.process.signalCode ?? c.process.exitCode)}`)
    expect(deaths.length, deaths.join(', ')).toBeLessThanOrEqual(MAX_ATTEMPTS)

    const { rows: history } = await t.db.pool.query<{ state: string; attempt: number; errors: Array<{ attempt: number; code: string; at: string }> }>(
      'select state, attempt, errors from job_history where id = $1',
      [poison.id],
    )
    expect(history).toHaveLength(1)
    const final = history[0]!
    expect(final.state).toBe('failed')
    expect(final.attempt).toBe(MAX_ATTEMPTS)
    expect(final.errors.map((e) => [e.attempt, e.code])).toEqual([
      [1, 'lease_expired'],
      [2, 'lease_expired'],
      [3, 'lease_expired'],
      [4, 'lease_expired'],
    ])
    // Each attempt ran exactly once.
    const { rows: runs } = await t.db.pool.query<{ attempt: number; started_at: Date }>(
      'select attempt, started_at from runs where job_id = $1 order by started_at',
      [poison.id],
    )
    expect(runs.map((r) => r.attempt)).toEqual([1, 2, 3, 4])
    // How long after each lease expiry was taken back the next attempt started.
    const waits = final.errors.slice(0, -1).map((e, i) => runs[i + 1]!.started_at.getTime() - new Date(e.at).getTime())
    // The first expiry (most often a worker killed by a deploy) runs again at once.
    expect(waits[0]).toBeLessThan(backoffFloorMs(2))
    // From the second expiry in a row on: the retry backoff of that attempt, at least.
    expect(waits[1]).toBeGreaterThanOrEqual(backoffFloorMs(2))
    expect(waits[2]).toBeGreaterThanOrEqual(backoffFloorMs(3))

    // Other stores' jobs ran while the poison job went round, and all of them completed.
    await orDescribe(t.db.pool, all(), () =>
      waitFor(async () => (await t.db.pool.query(`select count(*)::int as n from jobs where type = 'test.effect'`)).rows[0].n === 0, {
        timeoutMs: 30_000,
        what: 'the other jobs to finish',
      }),
    )
    const { rows: flow } = await t.db.pool.query<{ state: string; n: number; during: number }>(
      `select state, count(*)::int as n,
              count(*) filter (where finished_at < (select finished_at from job_history where id = $1))::int as during
       from job_history where type = 'test.effect' group by state`,
      [poison.id],
    )
    expect(flow.map((f) => [f.state, f.n])).toEqual([['completed', others.length]])
    // The poison job lived for seconds (4 leases and 2 backoffs at least): plenty of
    // the jobs enqueued 10 a second meanwhile finished before it did.
    expect(flow[0]!.during).toBeGreaterThanOrEqual(10)

    const alive = all().filter((c) => c.process.exitCode === null && c.process.signalCode === null)
    // A replacement may still be starting: only a started pool handles SIGTERM.
    await Promise.all(alive.map((c) => c.message('ready')))
    for (const child of alive) expect(await terminate(child), child.stderr().slice(-2_000)).toEqual({ code: 0, signal: null })
  })
})

describe('the rescue of one job, pass by pass', () => {
  // Each test sees only its own job (the rescuer takes back every expired lease).
  beforeEach(async () => {
    await t.db.pool.query('truncate jobs, job_history')
  })

  /** Claims the job with a lease that is over at once, as a worker that dies right away. */
  async function claimAndExpire(type: string): Promise<number> {
    const [row] = await claimBatch(t.db.kysely, { workerId: 'gone', limit: 1, leaseMs: 1, types: [type] })
    expect(row).toBeDefined()
    await waitFor(async () => (await t.db.pool.query('select locked_until < now() as over from jobs where id = $1', [row!.id])).rows[0]?.over, {
      timeoutMs: 5_000,
      intervalMs: 2,
    })
    return row!.attempt
  }
  const live = async (id: string) =>
    (
      await t.db.pool.query<{ state: string; attempt: number; wait_ms: number; errors: Array<{ code: string; attempt: number }> }>(
        `select state, attempt, errors, (extract(epoch from run_at - (errors -> -1 ->> 'at')::timestamptz) * 1000)::float8 as wait_ms
         from jobs where id = $1`,
        [id],
      )
    ).rows[0]

  it('returns the job at once on its first expiry, after the backoff on the next ones in a row, and fails it on the last', async () => {
    const { job } = await enqueue(t.db.kysely, { type: 'test.hang', storeId: 'store-h', maxAttempts: 3 })
    const rescuer = createRescuer({ db: t.db.kysely, maxAttempts: new Map() })
    expect(await claimAndExpire('test.hang')).toBe(1)
    expect(await rescuer.runOnce()).toEqual({ rescued: 1, delayed: 0, failed: 0 })
    expect(await live(job.id)).toMatchObject({ state: 'pending', attempt: 1 })

    expect(await claimAndExpire('test.hang')).toBe(2)
    expect(await rescuer.runOnce()).toEqual({ rescued: 1, delayed: 1, failed: 0 })
    const scheduled = await live(job.id)
    expect(scheduled).toMatchObject({ state: 'scheduled', attempt: 2 })
    // nextRunAt(2): between 1 and 2 s after the rescue.
    expect(scheduled!.wait_ms).toBeGreaterThanOrEqual(1_000)
    expect(scheduled!.wait_ms).toBeLessThanOrEqual(2_000)

    await waitFor(async () => (await createPromoter({ db: t.db.kysely }).runOnce()).promoted === 1, { timeoutMs: 5_000, what: 'the job to fall due' })
    expect(await claimAndExpire('test.hang')).toBe(3)
    expect(await rescuer.runOnce()).toEqual({ rescued: 0, delayed: 0, failed: 1 })
    const { rows } = await t.db.pool.query('select state, attempt, errors from job_history where id = $1', [job.id])
    expect(rows).toEqual([
      {
        state: 'failed',
        attempt: 3,
        errors: [1, 2, 3].map((attempt) => expect.objectContaining({ attempt, code: 'lease_expired' })),
      },
    ])
  })

  it('returns a job at once when its previous attempt failed in its handler, not by a lease expiry', async () => {
    const { job } = await enqueue(t.db.kysely, { type: 'test.flaky', storeId: 'store-h' })
    const [row] = await claimBatch(t.db.kysely, { workerId: 'w', limit: 1, leaseMs: 60_000, types: ['test.flaky'] })
    const error = { attempt: 1, at: new Date().toISOString(), code: 'boom', message: 'failed in its handler' }
    expect(await retryLater(t.db.kysely, { fence: { id: job.id, attempt: 1, leaseToken: row!.lease_token }, runAt: new Date(0), error })).toBe(true)
    expect(await claimAndExpire('test.flaky')).toBe(2)
    expect(await createRescuer({ db: t.db.kysely, maxAttempts: new Map() }).runOnce()).toEqual({ rescued: 1, delayed: 0, failed: 0 })
    expect(await live(job.id)).toMatchObject({ state: 'pending', attempt: 2 })
  })
})
