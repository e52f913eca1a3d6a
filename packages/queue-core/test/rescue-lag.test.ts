import { afterAll, describe, expect, it } from 'vitest'
import { enqueue } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_RUNS, passesOf, spawnMaintenanceWorker } from './fixtures/maintenance-worker.ts'

/**
 * How long a killed worker's job stays stuck after its lease ran out. The
 * rescuer sleeps between passes; a job claimed after its last pass must not
 * wait for the rescuer's longest sleep.
 */
const t = useTestDatabase()
afterAll(killAllChildren)

const LEASE_MS = 2_000
/** The rescuer's longest sleep: well past the job lease, as in production (60 s against 30 s before). */
const RESCUE_MS = 8_000

describe('rescue of a job whose worker was killed', () => {
  it('takes the job back within a fraction of a second of its lease expiry', { timeout: 60_000 }, async () => {
    await t.db.pool.query(CREATE_RUNS)
    // The leader runs maintenance only (nobody enqueues its type); the victim runs the job.
    const leader = spawnMaintenanceWorker({ url: t.url, label: 'leader', types: ['test.idle'], leaseMs: LEASE_MS, rescueMs: RESCUE_MS, promoteMs: 200, electionMs: 300 })
    expect((await leader.message('ready')).leader).toBe(true)
    const victim = spawnMaintenanceWorker({ url: t.url, label: 'victim', maintenance: false, leaseMs: LEASE_MS, concurrency: 1 })
    await victim.message('ready')
    // Nothing runs when the rescuer looks; the job is claimed right after.
    await waitFor(() => passesOf(leader).some((p) => p.service === 'rescuer'), { timeoutMs: 10_000, what: 'an idle rescuer pass' })
    const { job } = await enqueue(t.db.kysely, { type: 'test.effect', storeId: 'store-1', payload: { sleepMs: 60_000 } })
    await orDescribe(t.db.pool, [leader, victim], () =>
      waitFor(async () => (await t.db.pool.query('select 1 from runs where job_id = $1', [job.id])).rowCount === 1, {
        timeoutMs: 10_000,
        what: 'the victim to start the job',
      }),
    )
    victim.signal('SIGKILL')
    await victim.exited
    await waitFor(
      async () => (await t.db.pool.query(`select 1 from pg_stat_activity where application_name = 'backroom-test-victim'`)).rowCount === 0,
      { timeoutMs: 10_000, what: 'the sessions of the victim to end' },
    )
    // The victim can extend the lease no more: this is when it runs out.
    const { rows } = await t.db.pool.query<{ locked_until: Date }>(`select locked_until from jobs where id = $1 and state = 'running'`, [job.id])
    expect(rows).toHaveLength(1)
    const lockedUntil = rows[0]!.locked_until

    const rescuedAt = await orDescribe(t.db.pool, [leader], () =>
      waitFor(
        async () =>
          (await t.db.pool.query<{ at: string }>(`select errors -> -1 ->> 'at' as at from jobs where id = $1 and errors @> '[{"code":"lease_expired"}]'`, [job.id]))
            .rows[0]?.at,
        { timeoutMs: RESCUE_MS + 10_000, intervalMs: 50, what: 'the job to be rescued' },
      ),
    )
    const lagMs = new Date(rescuedAt).getTime() - lockedUntil.getTime()
    expect(lagMs).toBeGreaterThanOrEqual(0)
    expect(lagMs, `rescued ${lagMs} ms after the lease expired`).toBeLessThan(1_000)
    expect(await terminate(leader), leader.stderr().slice(-2_000)).toEqual({ code: 0, signal: null })
  })
})
