import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, spawnTsChild, terminate, type TsChild } from './fixtures/child-process.ts'
import { orDescribe } from './fixtures/diagnose.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

/** The traffic of the running test: stopped after it even when it failed, before its database goes. */
let liveTraffic: ReturnType<typeof startTraffic> | null = null
/** Supervisors of the running test: told to restart nothing more before its processes are killed. */
const liveFleets = new Set<{ abandon(): void }>()
afterEach(async () => {
  await liveTraffic?.stop()
  liveTraffic = null
  for (const fleet of liveFleets) fleet.abandon()
  liveFleets.clear()
  await killAllChildren()
})

const POISON_CHILD = 'test/fixtures/poison-worker-child.ts'
const LEASE_MS = 1_500
const MAX_ATTEMPTS = 3
/**
 * How long the watchdog lets poison.spin block a process (poison-worker-child.ts):
 * the longest timeout of the jobs the process holds plus the abort grace, so
 * poison.spin's own (1 s) alone, or test.effect's (5 s) when ordinary jobs share it.
 */
const ABORT_GRACE_MS = 300
const SPIN_BOUNDS_MS = [1_000 + ABORT_GRACE_MS, 5_000 + ABORT_GRACE_MS]
const ORDINARY_STORES = ['store-1', 'store-2', 'store-3', 'store-4']

beforeEach(async () => {
  await t.db.pool.query('drop table if exists runs; truncate jobs, job_history')
  await t.db.pool.query(`
    create table runs (
      job_id  bigint      not null,
      attempt int         not null,
      worker  text        not null,
      phase   text        not null,
      at      timestamptz not null default clock_timestamp()
    )`)
})

interface Death {
  readonly label: string
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly child: TsChild
}

/**
 * Three worker processes and a supervisor that restarts a dead one at once,
 * as a process manager would: `a` and `b` run every type; `m` runs only the
 * ordinary type and is the maintenance leader (rescuer, promoter), so the
 * fleet keeps its maintenance while poison jobs kill the others.
 */
function startFleet(options: { nodeArgs?: ReadonlyArray<string> } = {}) {
  const deaths: Death[] = []
  const current = new Map<string, TsChild>()
  const everyChild: TsChild[] = []
  let stopping = false
  const spawn = (name: string, generation: number, env: Record<string, string>, nodeArgs?: ReadonlyArray<string>): TsChild => {
    const label = `${name}-${generation}`
    const child = spawnTsChild(POISON_CHILD, { label, env: { DATABASE_URL: t.url, WORKER_LABEL: label, WORKER_LEASE_MS: String(LEASE_MS), ...env }, nodeArgs })
    current.set(name, child)
    everyChild.push(child)
    void child.exited.then(({ code, signal }) => {
      if (stopping) return
      deaths.push({ label, code, signal, child })
      spawn(name, generation + 1, env, nodeArgs)
    })
    return child
  }
  const poisonNodeArgs = options.nodeArgs && [...options.nodeArgs, '--conditions=@backroom/source', '--import', 'tsx']
  liveFleets.add({
    abandon() {
      stopping = true
    },
  })
  const maintenance = spawn('m', 1, { WORKER_TYPES: 'test.effect', WORKER_RESCUE_MS: '200', WORKER_PROMOTE_MS: '200', WORKER_ELECTION_MS: '200' })
  const first = [maintenance, spawn('a', 1, { WORKER_MAINTENANCE: '0' }, poisonNodeArgs), spawn('b', 1, { WORKER_MAINTENANCE: '0' }, poisonNodeArgs)]
  return {
    deaths,
    children: everyChild,
    async ready(): Promise<void> {
      // m starts first so that it wins the leader election.
      expect((await maintenance.message('ready', 60_000)).event).toBe('ready')
      await Promise.all(first.map((c) => c.message('ready', 60_000)))
    },
    /** Every message of every process that ever ran. */
    messages: (): Array<Record<string, unknown>> => everyChild.flatMap((c) => c.messages.map((m) => ({ ...m, label: c.label }))),
    async stop(): Promise<void> {
      stopping = true
      // A process restarted a moment ago must be up before SIGTERM means a clean stop to it.
      await Promise.all([...current.values()].map((c) => c.message('ready', 60_000)))
      const exits = await Promise.all([...current.values()].map(async (c) => ({ label: c.label, exit: await terminate(c), stderr: c.stderr() })))
      for (const e of exits) expect(e.exit, `${e.label}\n${e.stderr.slice(-4_000)}`).toEqual({ code: 0, signal: null })
    },
  }
}
type Fleet = ReturnType<typeof startFleet>

/** Ordinary jobs of four stores enqueued every 150 ms, a few at a time, until stopped; returns their ids. */
function startTraffic() {
  const ids: string[] = []
  let running = true
  const loop = (async () => {
    for (let round = 0; running; round++) {
      const specs = ORDINARY_STORES.map((storeId, i) => ({ type: 'test.effect', storeId, payload: { sleepMs: 20 + ((round * 7 + i * 13) % 80) } }))
      ids.push(...(await enqueueMany(t.db.kysely, specs)).map((r) => r.job.id))
      await new Promise((r) => setTimeout(r, 150))
    }
  })()
  const traffic = {
    async stop(): Promise<string[]> {
      running = false
      await loop
      return ids
    },
  }
  liveTraffic = traffic
  return traffic
}

async function enqueuePoison(type: string, payload: Record<string, unknown>): Promise<string> {
  return (await enqueue(t.db.kysely, { type, storeId: 'store-poison', payload, maxAttempts: MAX_ATTEMPTS })).job.id
}

interface HistoryRow {
  id: string
  state: string
  attempt: number
  errors: Array<{ attempt: number; code: string; message: string }>
  finished_at: Date
}

async function history(ids: ReadonlyArray<string>): Promise<HistoryRow[]> {
  return (
    await t.db.pool.query<HistoryRow>(
      'select id::text, state, attempt, errors, finished_at from job_history where id = any($1::bigint[]) order by job_history.id',
      [ids],
    )
  ).rows
}

async function runsOf(id: string): Promise<Array<{ attempt: number; worker: string; phase: string; at: Date }>> {
  return (await t.db.pool.query('select attempt, worker, phase, at from runs where job_id = $1 order by at', [id])).rows
}

/** Waits until every job of `ids` is finished (in history). */
async function waitFinished(fleet: Fleet, ids: ReadonlyArray<string>, what: string, timeoutMs = 60_000): Promise<void> {
  await orDescribe(t.db.pool, fleet.children, () =>
    waitFor(async () => (await history(ids)).length === ids.length, { timeoutMs, intervalMs: 100, what }),
  )
}

/**
 * The ordinary jobs each completed exactly once: one history row, completed,
 * and one `done` run of the attempt that completed. With `firstAttempt`,
 * nothing disturbed them at all: attempt 1, no error, one run. Otherwise
 * (a process died under some) earlier attempts may have run too.
 */
async function expectOrdinaryDoneOnce(ids: ReadonlyArray<string>, options: { firstAttempt: boolean }): Promise<void> {
  expect(ids.length).toBeGreaterThan(20)
  const rows = await history(ids)
  expect(rows.map((r) => r.id)).toEqual([...ids].sort((a, b) => Number(a) - Number(b)))
  expect(rows.filter((r) => r.state !== 'completed')).toEqual([])
  const done = (await t.db.pool.query<{ job_id: string; attempt: number }>(`select job_id::text, attempt from runs where phase = 'done' and job_id = any($1::bigint[])`, [ids])).rows
  const doneByJob = new Map<string, number[]>()
  for (const d of done) doneByJob.set(d.job_id, [...(doneByJob.get(d.job_id) ?? []), d.attempt])
  for (const r of rows) {
    const attempts = doneByJob.get(r.id) ?? []
    expect(attempts.filter((a) => a === r.attempt), `job ${r.id}`).toHaveLength(1)
    expect(attempts.every((a) => a <= r.attempt), `job ${r.id}`).toBe(true)
    if (options.firstAttempt) expect({ id: r.id, attempt: r.attempt, errors: r.errors, runs: attempts.length }).toEqual({ id: r.id, attempt: 1, errors: [], runs: 1 })
  }
}

/** Ordinary jobs finished while the poison job was being tried: the other stores were served meanwhile. */
async function expectFlowingDuring(ordinary: ReadonlyArray<string>, poisonId: string): Promise<void> {
  const [poison] = await history([poisonId])
  const firstStart = (await runsOf(poisonId))[0]!.at
  const during = (await history(ordinary)).filter((r) => r.finished_at > firstStart && r.finished_at < poison!.finished_at)
  expect(new Set((await t.db.pool.query(`select store_id from job_history where id = any($1::bigint[])`, [during.map((r) => r.id)])).rows.map((r) => r.store_id))).toEqual(
    new Set(ORDINARY_STORES),
  )
}

/** Exactly MAX_ATTEMPTS runs of the job, attempts 1 to MAX_ATTEMPTS in order, and its history row failed on the last with `code` each time. */
async function expectFailedAfterMaxAttempts(id: string, code: string, what = `job ${id}`) {
  const [row] = await history([id])
  expect(row, what).toMatchObject({ state: 'failed', attempt: MAX_ATTEMPTS })
  expect(row!.errors.map((e) => ({ attempt: e.attempt, code: e.code })), what).toEqual(
    Array.from({ length: MAX_ATTEMPTS }, (_, i) => ({ attempt: i + 1, code })),
  )
  const starts = (await runsOf(id)).filter((r) => r.phase === 'start')
  expect(starts.map((r) => r.attempt), what).toEqual(Array.from({ length: MAX_ATTEMPTS }, (_, i) => i + 1))
  return { row: row!, starts }
}

describe('poison jobs, among several stores\u2019 ordinary jobs', () => {
  it('a handler throwing a non-Error fails after exactly maxAttempts with code non_error_thrown and a message; no process dies', { timeout: 90_000 }, async () => {
    const fleet = startFleet()
    await fleet.ready()
    const traffic = startTraffic()
    const kinds = ['string', 'undefined', 'null', 'object', 'symbol', 'unprintable'] as const
    const ids = await Promise.all(kinds.map((kind) => enqueuePoison('poison.throw', { kind })))
    await waitFinished(fleet, ids, 'every throwing job to fail')
    const ordinary = await traffic.stop()
    await waitFinished(fleet, ordinary, 'the ordinary jobs')

    const expected: Record<(typeof kinds)[number], string | RegExp> = {
      string: 'plain string thrown',
      undefined: 'undefined',
      null: 'null',
      object: '{"reason":"object thrown","status":503}',
      symbol: 'Symbol(thrown symbol)',
      unprintable: /\S/,
    }
    for (const [i, kind] of kinds.entries()) {
      const { row } = await expectFailedAfterMaxAttempts(ids[i]!, 'non_error_thrown', kind)
      for (const e of row.errors) expect(e.message, kind).toMatch(expected[kind])
    }
    expect(fleet.deaths).toEqual([])
    await expectOrdinaryDoneOnce(ordinary, { firstAttempt: true })
    await fleet.stop()
  })

  it('a handler that never settles times out, is retried, and fails after exactly maxAttempts with code timeout; no process dies', { timeout: 90_000 }, async () => {
    const fleet = startFleet()
    await fleet.ready()
    const traffic = startTraffic()
    const id = await enqueuePoison('poison.hang', {})
    await waitFinished(fleet, [id], 'the hanging job to fail')
    const ordinary = await traffic.stop()
    await waitFinished(fleet, ordinary, 'the ordinary jobs')

    await expectFailedAfterMaxAttempts(id, 'timeout')
    expect(fleet.deaths).toEqual([])
    await expectFlowingDuring(ordinary, id)
    await expectOrdinaryDoneOnce(ordinary, { firstAttempt: true })
    await fleet.stop()
  })

  it('a handler that blocks the event loop for longer than the lease runs once and completes: the watchdog kept the leases of its process', { timeout: 90_000 }, async () => {
    const fleet = startFleet()
    await fleet.ready()
    const traffic = startTraffic()
    const blockMs = Math.round(2.7 * LEASE_MS)
    const id = await enqueuePoison('poison.block', { ms: blockMs })
    await waitFinished(fleet, [id], 'the blocking job to end')
    // Some traffic after the block, so ordinary jobs of the blocked process are seen to finish too.
    await new Promise((r) => setTimeout(r, LEASE_MS))
    const ordinary = await traffic.stop()
    await waitFinished(fleet, ordinary, 'the ordinary jobs')

    const [row] = await history([id])
    expect(row).toMatchObject({ state: 'completed', attempt: 1, errors: [] })
    const runs = await runsOf(id)
    expect(runs.map((r) => [r.attempt, r.phase])).toEqual([
      [1, 'start'],
      [1, 'end'],
    ])
    expect(runs[1]!.at.getTime() - runs[0]!.at.getTime()).toBeGreaterThanOrEqual(blockMs)
    // The blocked process's watchdog said so, naming the job.
    const blocked = fleet.messages().find((m) => m.msg === 'event loop blocked; watchdog keeping leases')
    expect(blocked, 'the watchdog log line').toMatchObject({ label: runs[0]!.worker, jobIds: expect.arrayContaining([id]) })
    expect(fleet.deaths).toEqual([])
    // The other jobs that process held kept their leases as well: nothing ran twice.
    await expectOrdinaryDoneOnce(ordinary, { firstAttempt: true })
    await fleet.stop()
  })

  it('a handler that blocks the event loop for ever: the watchdog kills the process, the supervisor restarts it, and the job fails after exactly maxAttempts with lease_expired', { timeout: 120_000 }, async () => {
    const fleet = startFleet()
    await fleet.ready()
    const traffic = startTraffic()
    const id = await enqueuePoison('poison.spin', {})
    await waitFinished(fleet, [id], 'the spinning job to fail', 90_000)
    const ordinary = await traffic.stop()
    await waitFinished(fleet, ordinary, 'the ordinary jobs')

    const { starts } = await expectFailedAfterMaxAttempts(id, 'lease_expired')
    // One process per attempt, each killed by its watchdog after logging the job it held.
    expect(fleet.deaths.map((d) => ({ label: d.label, code: d.code, signal: d.signal }))).toEqual(
      starts.map((s) => ({ label: s.worker, code: null, signal: 'SIGKILL' })),
    )
    for (const death of fleet.deaths) {
      const line = death.child.messages.find((m) => m.msg === 'event loop wedged; killing process')
      expect(line, `${death.label}\n${death.child.stderr().slice(-2_000)}`).toMatchObject({ jobIds: expect.arrayContaining([id]) })
      expect(SPIN_BOUNDS_MS).toContain(line!.boundMs)
      expect(line!.blockedMs as number).toBeGreaterThan(line!.boundMs as number)
    }
    // Each attempt came back only after its process was killed and its lease ran out; the third after a backoff as well.
    const gaps = starts.slice(1).map((s, i) => s.at.getTime() - starts[i]!.at.getTime())
    expect(gaps[0]).toBeGreaterThan(SPIN_BOUNDS_MS[0]!)
    expect(gaps[1]).toBeGreaterThan(SPIN_BOUNDS_MS[0]! + 1_000)
    await expectFlowingDuring(ordinary, id)
    await expectOrdinaryDoneOnce(ordinary, { firstAttempt: false })
    await fleet.stop()
  })

  it('a handler that allocates until the heap is exhausted: the process dies, is restarted, and the job fails after exactly maxAttempts', { timeout: 120_000 }, async () => {
    const fleet = startFleet({ nodeArgs: ['--max-old-space-size=48'] })
    await fleet.ready()
    const traffic = startTraffic()
    const id = await enqueuePoison('poison.oom', {})
    await waitFinished(fleet, [id], 'the allocating job to fail', 90_000)
    const ordinary = await traffic.stop()
    await waitFinished(fleet, ordinary, 'the ordinary jobs')

    const { starts } = await expectFailedAfterMaxAttempts(id, 'lease_expired')
    expect(fleet.deaths.map((d) => d.label)).toEqual(starts.map((s) => s.worker))
    for (const death of fleet.deaths) {
      expect(death.signal ?? death.code, death.label).not.toBe(0)
      expect(death.child.stderr(), death.label).toMatch(/heap out of memory/i)
    }
    await expectFlowingDuring(ordinary, id)
    await expectOrdinaryDoneOnce(ordinary, { firstAttempt: false })
    await fleet.stop()
  })
})
