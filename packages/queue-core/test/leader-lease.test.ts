import { afterAll, describe, expect, it } from 'vitest'
import { enqueue } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_RUNS, isLeader, logsOf, passesOf, spawnMaintenanceWorker, type PassRecord } from './fixtures/maintenance-worker.ts'

/**
 * A leader process that stops answering without dying (SIGSTOP here; a
 * blocked event loop or a debugger pause alike) keeps its TCP connections:
 * leadership must still move, because the lease it holds expires by the
 * database clock whether or not the holder cooperates.
 */
const t = useTestDatabase()
afterAll(killAllChildren)

/** Short lease and election intervals so the takeover takes seconds, not a minute. */
const TTL_MS = 3_000
const ELECTION_MS = 300
const settings = { leaseMs: 2_000, rescueMs: 500, promoteMs: 200, electionMs: ELECTION_MS, leaderTtlMs: TTL_MS, concurrency: 2 }

describe('a maintenance leader frozen with SIGSTOP', () => {
  it('loses the lease to another process, which promotes and runs due work; resumed, it steps down and runs no pass', { timeout: 120_000 }, async () => {
    await t.db.pool.query(CREATE_RUNS)
    // A starts alone, so it wins the first election.
    const a = spawnMaintenanceWorker({ url: t.url, label: 'a', ...settings })
    expect((await a.message('ready')).leader).toBe(true)
    const b = spawnMaintenanceWorker({ url: t.url, label: 'b', ...settings })
    const c = spawnMaintenanceWorker({ url: t.url, label: 'c', ...settings })
    expect((await b.message('ready')).leader).toBe(false)
    expect((await c.message('ready')).leader).toBe(false)
    const all = [a, b, c]
    await waitFor(() => passesOf(a).some((p) => p.service === 'promoter'), { timeoutMs: 10_000, what: 'a first promoter pass by a' })

    a.signal('SIGSTOP')
    const { job } = await enqueue(t.db.kysely, { type: 'test.effect', storeId: 'store-1', delayMs: 1_000 })
    expect(job.state).toBe('scheduled')

    // Still frozen: only a new leader can promote the job, and b or c runs it.
    const done = await orDescribe(t.db.pool, all, () =>
      waitFor(
        async () =>
          (await t.db.pool.query<{ state: string; late_ms: number }>(
            `select state, (extract(epoch from finished_at - run_at) * 1000)::float8 as late_ms from job_history where id = $1`,
            [job.id],
          )).rows[0],
        { timeoutMs: TTL_MS + ELECTION_MS + 15_000, intervalMs: 50, what: 'the delayed job to run while the leader is stopped' },
      ),
    )
    expect(done.state).toBe('completed')
    // The lease runs out at most TTL after a's last renewal; a follower looks at
    // least every election interval; the slack covers a loaded machine.
    expect(done.late_ms).toBeLessThan(TTL_MS + ELECTION_MS + 2_000)
    const ran = (await t.db.pool.query<{ worker: string }>('select worker from runs where job_id = $1', [job.id])).rows
    expect(ran.map((r) => r.worker)).toEqual([expect.stringMatching(/^[bc]$/)])

    const successor = await waitFor(() => [b, c].find(isLeader), { timeoutMs: 5_000, what: 'b or c to report the leadership' })
    const lease = async () =>
      (await t.db.pool.query<{ holder: string; term: string }>('select holder, term::text from leader_lease')).rows
    expect(await lease()).toEqual([{ holder: `w-${successor.label}`, term: '2' }])

    a.signal('SIGCONT')
    const resumedAt = Date.now()
    // a notices by itself that its lease is gone, and says so.
    await orDescribe(t.db.pool, all, () =>
      waitFor(() => logsOf(a, 'leadership lost').length > 0 && !isLeader(a), { timeoutMs: 10_000, what: 'a to report the leadership lost' }),
    )
    expect(logsOf(a, 'leadership lost')[0]).toMatchObject({ term: 1 })
    // Let the successor run plenty of passes after a resumed, so a pass a
    // ran on its stale timers would have had time to show up.
    await waitFor(() => passesOf(successor).filter((p) => p.startedAt > resumedAt).length >= 10, {
      timeoutMs: 15_000,
      what: 'passes by the successor after a resumed',
    })

    const passes: PassRecord[] = all.flatMap(passesOf)
    // Every pass names its term, and each term belongs to one process.
    expect(passes.filter((p) => p.term === undefined)).toEqual([])
    expect(new Set(passes.filter((p) => p.term === 1).map((p) => p.label))).toEqual(new Set(['a']))
    expect(new Set(passes.filter((p) => p.term === 2).map((p) => p.label))).toEqual(new Set([successor.label]))
    // No pass of the old term began after the new term's first pass: the two
    // leaders never ran maintenance side by side.
    const firstOfNewTerm = Math.min(...passes.filter((p) => p.term === 2).map((p) => p.startedAt))
    const lateOldPasses = passes.filter((p) => p.term === 1 && p.startedAt >= firstOfNewTerm)
    expect(lateOldPasses, 'a pass of the deposed leader started after the new leader took over').toEqual([])
    expect(passesOf(a).filter((p) => p.startedAt >= resumedAt)).toEqual([])
    // Nor did a take the lease back.
    expect(await lease()).toEqual([{ holder: `w-${successor.label}`, term: '2' }])
    expect(all.filter(isLeader)).toEqual([successor])

    for (const child of all) expect(await terminate(child), child.stderr().slice(-2_000)).toEqual({ code: 0, signal: null })
  })
})

