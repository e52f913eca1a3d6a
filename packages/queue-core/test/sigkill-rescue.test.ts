import type pg from 'pg'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, terminate, type TsChild } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const N = 200

const count = async (pool: pg.Pool, text: string, values: unknown[] = []): Promise<number> =>
  Number((await pool.query(text, values)).rows[0].n)

beforeEach(async () => {
  await t.db.pool.query('drop table if exists side_effects; truncate jobs, job_history')
  await t.db.pool.query(CREATE_SIDE_EFFECTS)
  // 300-1000 ms per job, spread deterministically, so a worker dies with runs at every stage.
  await enqueueMany(
    t.db.kysely,
    Array.from({ length: N }, (_, i) => ({ type: 'test.effect', storeId: `store-${i % 10}`, payload: { sleepMs: 300 + ((i * 137) % 701) } })),
  )
})

/** Waits until `victim` has finished some jobs and is running others. */
async function midDrain(victim: TsChild): Promise<void> {
  const workerId = `w-${victim.label}`
  await orDescribe(t.db.pool, [victim], () =>
    waitFor(
      async () =>
        (await count(t.db.pool, `select count(*) as n from jobs where state = 'running' and locked_by = $1`, [workerId])) >= 5 &&
        (await count(t.db.pool, 'select count(*) as n from job_history')) >= 15,
      { timeoutMs: 30_000, what: `${victim.label} to be mid-drain` },
    ),
  )
}

/** What the database shows once a SIGKILLed worker can change nothing more. */
interface Wreck {
  /** Jobs it held running: their leases must expire and be rescued. */
  readonly orphanIds: ReadonlyArray<string>
  /** Orphans whose first run had already written its side effect: at-least-once shows here. */
  readonly endedUnrecorded: ReadonlyArray<string>
  readonly completedBefore: number
}

async function killAndInspect(victim: TsChild): Promise<Wreck> {
  victim.signal('SIGKILL')
  expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' })
  // A statement the victim sent before dying may still commit while its session
  // lives; once its sessions are gone, the database shows all it ever did.
  await waitFor(
    async () => (await count(t.db.pool, `select count(*) as n from pg_stat_activity where application_name = $1`, [`backroom-test-${victim.label}`])) === 0,
    { timeoutMs: 10_000, what: `the sessions of ${victim.label} to end` },
  )
  const { rows } = await t.db.pool.query<{ id: string; attempt: number; rescued_already: number }>(
    `select id, attempt,
            (select count(*)::int from jobs where errors @> '[{"code":"lease_expired"}]')
            + (select count(*)::int from job_history where errors @> '[{"code":"lease_expired"}]') as rescued_already
     from jobs where state = 'running' and locked_by = $1 order by id`,
    [`w-${victim.label}`],
  )
  expect(rows.length).toBeGreaterThan(0)
  expect(rows.every((r) => r.attempt === 1)).toBe(true)
  expect(rows[0]!.rescued_already, 'the snapshot came after a rescue: the victim lease is too short for this machine').toBe(0)
  const orphanIds = rows.map((r) => r.id)
  const endedUnrecorded = (
    await t.db.pool.query<{ job_id: string }>('select job_id::text from side_effects where job_id = any($1::bigint[]) order by job_id', [orphanIds])
  ).rows.map((r) => r.job_id)
  const completedBefore = await count(t.db.pool, 'select count(*) as n from job_history')
  // Some jobs were never claimed by the victim: the survivor runs those as first attempts.
  expect(completedBefore + orphanIds.length).toBeLessThan(N)
  return { orphanIds, endedUnrecorded, completedBefore }
}

/**
 * After the survivor drained everything: every job completed; the orphans
 * on attempt 2 with exactly one lease_expired error, all others on attempt 1
 * with none; and each job's completing attempt wrote its side effect exactly
 * once (the only extra rows being the orphans' first runs that had ended).
 */
async function expectEachJobDoneOnce(wreck: Wreck, survivor: string): Promise<void> {
  expect(await count(t.db.pool, 'select count(*) as n from jobs')).toBe(0)
  const history = (
    await t.db.pool.query<{ id: string; state: string; attempt: number; errors: Array<{ attempt: number; code: string }> }>(
      'select id::text, state, attempt, errors from job_history order by id',
    )
  ).rows
  expect(history).toHaveLength(N)
  expect(history.filter((h) => h.state !== 'completed')).toEqual([])
  const orphans = new Set(wreck.orphanIds)
  const rescued = history.filter((h) => orphans.has(h.id))
  expect(rescued.map((h) => h.id)).toEqual(wreck.orphanIds)
  for (const h of rescued) {
    expect(h.attempt, `job ${h.id}`).toBe(2)
    expect(h.errors, `job ${h.id}`).toEqual([expect.objectContaining({ attempt: 1, code: 'lease_expired' })])
  }
  expect(history.filter((h) => !orphans.has(h.id) && (h.attempt !== 1 || h.errors.length !== 0))).toEqual([])

  const effects = (
    await t.db.pool.query<{ job_id: string; attempt: number; worker: string }>('select job_id::text, attempt, worker from side_effects order by job_id, attempt')
  ).rows
  const finalAttempt = new Map(history.map((h) => [h.id, h.attempt]))
  const byJob = new Map<string, Array<{ attempt: number; worker: string }>>()
  for (const e of effects) byJob.set(e.job_id, [...(byJob.get(e.job_id) ?? []), { attempt: e.attempt, worker: e.worker }])
  expect(byJob.size).toBe(N)
  for (const [id, runs] of byJob) {
    expect(runs.filter((r) => r.attempt === finalAttempt.get(id)), `job ${id}`).toHaveLength(1)
    if (orphans.has(id)) {
      expect(runs.find((r) => r.attempt === 2)?.worker, `job ${id}`).toBe(survivor)
      expect(runs, `job ${id}`).toHaveLength(wreck.endedUnrecorded.includes(id) ? 2 : 1)
    } else expect(runs, `job ${id}`).toHaveLength(1)
  }
  expect(effects).toHaveLength(N + wreck.endedUnrecorded.length)
}

async function drainWith(survivor: TsChild): Promise<void> {
  await orDescribe(t.db.pool, [survivor], () =>
    waitFor(async () => (await count(t.db.pool, 'select count(*) as n from job_history')) >= N, {
      timeoutMs: 60_000,
      intervalMs: 100,
      what: `all ${N} jobs finished`,
    }),
  )
}

describe('a worker process killed with SIGKILL', () => {
  it('loses no job: its running jobs are rescued after the lease and run again once, with attempt 2', { timeout: 120_000 }, async () => {
    const victim = spawnWorker({ url: t.url, label: 'victim', concurrency: 10, leaseMs: 2_000, maintenance: false })
    await victim.message('ready')
    await midDrain(victim)
    const wreck = await killAndInspect(victim)

    const rescuer = spawnWorker({ url: t.url, label: 'rescuer', concurrency: 20, leaseMs: 2_000, rescueMs: 500, promoteMs: 200, electionMs: 500 })
    await rescuer.message('ready')
    await drainWith(rescuer)
    expect(await terminate(rescuer), rescuer.stderr()).toEqual({ code: 0, signal: null })
    expect((await rescuer.message('stopped', 1_000)).outcomes).toEqual({ completed: N - wreck.completedBefore })
    await expectEachJobDoneOnce(wreck, 'rescuer')
  })

  it('that was the maintenance leader: a follower process takes over the leadership and rescues its jobs', { timeout: 120_000 }, async () => {
    const maintenance = { rescueMs: 500, promoteMs: 200, electionMs: 500 }
    // The victim starts alone, so it wins the election; its lease is longer than the
    // other test's so the snapshot after its death surely precedes the new leader's rescue.
    const victim = spawnWorker({ url: t.url, label: 'leader', concurrency: 10, leaseMs: 3_000, ...maintenance })
    expect((await victim.message('ready')).leader).toBe(true)
    const follower = spawnWorker({ url: t.url, label: 'follower', concurrency: 10, leaseMs: 3_000, ...maintenance })
    expect((await follower.message('ready')).leader).toBe(false)
    await midDrain(victim)
    const wreck = await killAndInspect(victim)

    await drainWith(follower)
    expect(await terminate(follower), follower.stderr()).toEqual({ code: 0, signal: null })
    const report = await follower.message('stopped', 1_000)
    expect(report.wasLeader).toBe(true)
    expect(report.outcomes).toEqual({ completed: expect.any(Number) })
    const byVictim = await count(t.db.pool, `select count(*) as n from side_effects where worker = 'leader' and attempt = 1`)
    expect((report.outcomes as { completed: number }).completed).toBe(N - (byVictim - wreck.endedUnrecorded.length))
    await expectEachJobDoneOnce(wreck, 'follower')
  })
})
