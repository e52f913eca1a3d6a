import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, spawnTsChild, terminate, type TsChild } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_SIDE_EFFECTS } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const FROZEN_CHILD = 'test/fixtures/frozen-worker-child.ts'
const LEASE_MS = 2_000
/** The pool's heartbeat period for that lease (worker-pool.ts: a third of the lease, at least 200 ms). */
const HEARTBEAT_MS = Math.max(200, Math.floor(LEASE_MS / 3))
const MODES = ['complete', 'progress', 'retry', 'wait'] as const
const PER_MODE = 2
const PREFETCHED = 4

function spawnFrozenWorker(label: string, env: Record<string, string>): TsChild {
  return spawnTsChild(FROZEN_CHILD, { label, env: { DATABASE_URL: t.url, WORKER_LABEL: label, WORKER_LEASE_MS: String(LEASE_MS), ...env } })
}

const count = async (pool: pg.Pool, text: string): Promise<number> => Number((await pool.query(text)).rows[0].n)

describe('a worker process frozen (SIGSTOP) past its leases', () => {
  it('changes nothing when it wakes after another worker finished its jobs, and aborts its handlers within a heartbeat', { timeout: 120_000 }, async () => {
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    // Not a maintenance leader: a frozen leader would hold the election lock and nobody would rescue.
    // Eight slots and four prefetched jobs held beyond them.
    const frozen = spawnFrozenWorker('frozen', { WORKER_CONCURRENCY: '8', WORKER_PREFETCH: '4', WORKER_MAINTENANCE: '0' })
    await frozen.message('ready')
    const specs = MODES.flatMap((mode, m) =>
      Array.from({ length: PER_MODE }, (_, i) => ({ type: 'test.freeze', storeId: `store-${m}-${i}`, payload: { mode, holdMs: 1_500 } })),
    )
    // Claimed after the others (lower priority), so these are the ones that wait for a slot.
    const queued = Array.from({ length: PREFETCHED }, (_, i) => ({
      type: 'test.freeze',
      storeId: `store-q-${i}`,
      priority: 'low' as const,
      payload: { mode: 'complete' as const, holdMs: 0 },
    }))
    const jobs = (await enqueueMany(t.db.kysely, [...specs, ...queued])).map((r, i) => ({
      id: r.job.id,
      mode: i < specs.length ? specs[i]!.payload.mode : 'prefetched',
    }))
    const ids = jobs.map((j) => j.id)
    const runningIds = jobs.filter((j) => j.mode !== 'prefetched').map((j) => j.id)
    await orDescribe(t.db.pool, [frozen], () =>
      waitFor(
        async () =>
          runningIds.every((id) => frozen.messages.some((m) => m.event === 'started' && m.jobId === id)) &&
          (await count(t.db.pool, `select count(*) as n from jobs where state = 'running' and locked_by = 'w-frozen'`)) === ids.length,
        { timeoutMs: 30_000, what: 'every job started or prefetched' },
      ),
    )

    // Frozen with every job running and every first attempt's timer still ahead of it.
    frozen.signal('SIGSTOP')
    const survivor = spawnFrozenWorker('survivor', {
      WORKER_CONCURRENCY: '8',
      WORKER_RESCUE_MS: '200',
      WORKER_ELECTION_MS: '200',
      WORKER_PROMOTE_MS: '100',
    })
    await survivor.message('ready')
    await orDescribe(t.db.pool, [frozen, survivor], () =>
      waitFor(async () => (await count(t.db.pool, 'select count(*) as n from job_history')) === jobs.length, {
        timeoutMs: 60_000,
        intervalMs: 100,
        what: 'the survivor to finish every job',
      }),
    )
    const before = (await t.db.pool.query('select id::text, state, attempt, progress, result, errors from job_history order by job_history.id')).rows

    frozen.signal('SIGCONT')
    // Every run of the frozen worker ends, and each one wrote nothing.
    await orDescribe(t.db.pool, [frozen, survivor], () =>
      waitFor(() => frozen.messages.filter((m) => m.event === 'outcome').length >= runningIds.length, {
        timeoutMs: 30_000,
        what: 'the frozen runs to end',
      }),
    )
    const outcomes = frozen.messages.filter((m) => m.event === 'outcome')
    expect(outcomes.map((m) => m.outcome)).toEqual(runningIds.map(() => 'lease_lost'))
    // The jobs it had prefetched are another worker's now: it never starts them.
    expect(frozen.messages.filter((m) => m.event === 'started').map((m) => m.jobId)).toEqual(runningIds)

    // Handlers still waiting on their signal hear of the lost lease within one heartbeat of waking.
    const continued = (await frozen.message('continued', 5_000)).at as number
    for (const job of jobs.filter((j) => j.mode === 'wait' || j.mode === 'progress')) {
      const aborted = frozen.messages.find((m) => m.event === 'aborted' && m.jobId === job.id)
      expect(aborted, `job ${job.id} (${job.mode})`).toMatchObject({ reason: 'lease_lost', attempt: 1 })
      expect((aborted!.at as number) - continued, `job ${job.id} (${job.mode})`).toBeLessThan(HEARTBEAT_MS)
    }
    // Its progress writes found the job gone.
    const progress = frozen.messages.filter((m) => m.event === 'progress')
    expect(progress).toHaveLength(PER_MODE)
    expect(progress.every((m) => m.ok === false && m.code === 'lease_lost')).toBe(true)

    expect(await terminate(frozen), frozen.stderr()).toEqual({ code: 0, signal: null })
    expect(await terminate(survivor), survivor.stderr()).toEqual({ code: 0, signal: null })

    // Exactly one outcome per job: the survivor's, with its result and progress; history unchanged by the frozen worker.
    expect(await count(t.db.pool, 'select count(*) as n from jobs')).toBe(0)
    const history = (await t.db.pool.query('select id::text, state, attempt, progress, result, errors from job_history order by job_history.id')).rows
    expect(history).toEqual(before)
    expect(history.map((h) => h.id)).toEqual([...ids].sort((a, b) => Number(a) - Number(b)))
    for (const h of history) {
      expect(h, `job ${h.id}`).toMatchObject({
        state: 'completed',
        attempt: 2,
        progress: { by: 'survivor', attempt: 2 },
        result: { by: 'survivor', attempt: 2 },
        errors: [expect.objectContaining({ attempt: 1, code: 'lease_expired' })],
      })
      expect(h.errors).toHaveLength(1)
    }
    const effects = (await t.db.pool.query('select job_id::text, attempt, worker from side_effects order by side_effects.job_id, attempt')).rows
    expect(effects).toEqual(
      jobs.flatMap((j) => [
        ...(j.mode === 'prefetched' ? [] : [{ job_id: j.id, attempt: 1, worker: 'frozen' }]),
        { job_id: j.id, attempt: 2, worker: 'survivor' },
      ]),
    )
  })
})
