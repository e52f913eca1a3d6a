import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NOTIFY_CHANNEL } from '../src/config.ts'
import { connect, isDatabaseUnavailable, type Db } from '../src/db/connect.ts'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { defineHandler } from '../src/handler.ts'
import { recordFaultFigures } from '../src/testing/fault-figures.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { EnqueueSpec } from '../src/types.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { watchRecovery } from './fixtures/recovery.ts'
import { orDescribe } from './fixtures/diagnose.ts'
import { CREATE_RUNS, isLeader, passesOf, spawnMaintenanceWorker, type PassRecord } from './fixtures/maintenance-worker.ts'
import { createRestartablePostgres, SHUTDOWN_MODES, type RestartablePostgres } from './fixtures/restartable-postgres.ts'

/**
 * The queue's PostgreSQL restarted under load, once with a fast shutdown and
 * once with an immediate one (crash recovery on the next start). The queue
 * lives on a server of this test's own (a persistent data folder on a fixed
 * port, so it comes back where the workers look); the handlers record their
 * runs on the run's shared test server, which is never restarted, so the
 * record of runs survives whatever the queue's server loses.
 */
const t = useTestDatabase()

/** The phases' lengths scale with FAULTS_SCALE (default 1: the file stays around a minute). */
const SCALE = Number(process.env.FAULTS_SCALE ?? 1)
if (!Number.isFinite(SCALE) || SCALE <= 0) throw new Error('FAULTS_SCALE must be a positive number')
const PHASE = {
  warmupMs: 1_000,
  /** Throughput is measured over this long before the restarts and after each. */
  windowMs: 3_000,
  /** How long the server stays down each time. */
  downMs: 3_000 * SCALE,
}
/**
 * Live jobs topped up to before the first window and before each restart, so
 * the windows measure what the workers can do rather than the enqueue rate
 * (the figures say whether the backlog lasted).
 */
const BACKLOG = 1_500
/** Loose bounds: speed is not asserted here, only that things come back. */
const RESUME_WITHIN_MS = 30_000
/** How long after a restart the throughput is watched for its return to 90 % of the rate before. */
const RECOVER_WITHIN_MS = 30_000
/** Short leader lease: the downtime outlasts it, so every restart costs the leader its term. */
const LEADER_TTL_MS = 3_000
const WORKERS = ['r1', 'r2', 'r3']

/**
 * Failed claims before the server comes back: the producer pauses 100 ms ×
 * 2^n after its n-th failure in a row, so the pause that follows is 6.4 s.
 */
const CLAIM_FAILURES_BEFORE_RESTART = 6
/** A woken producer claims at once; well under the 6.4 s pause, with room for a loaded machine. */
const WAKE_TO_RUN_WITHIN_MS = 2_500

/**
 * How long before an immediate shutdown a claim may have committed and still
 * be undone by crash recovery: the WAL writer flushes asynchronous commits
 * within wal_writer_delay (200 ms), sooner when another commit flushes; the
 * rest is room for a loaded machine. Also the room after the server stopped
 * for the handler of such a claim to record its start.
 */
const LOST_CLAIM_WINDOW_MS = 1_000

/** One restart's figures, with when the shutdown began, when the server had stopped and when it was back (ms since the epoch). */
type Restart = Record<string, unknown> & { downAt: number; stoppedAt: number; upAt: number }

/** The queue's server: its data folder and port stay the same across restarts. */
let queueServer: RestartablePostgres | null = null
const opened: Db[] = []

beforeAll(async () => {
  queueServer = await createRestartablePostgres()
  await queueServer.start()
})

afterAll(async () => {
  await killAllChildren()
  for (const db of opened.splice(0)) await db.close()
  await queueServer?.close()
})

const server = (): RestartablePostgres => queueServer as RestartablePostgres

/**
 * The API's part: enqueues canaries, each with a dedupe key of its own
 * sequence number, and while the server is unavailable tries the same batch
 * again (as a client does after a 503). A batch that failed may have
 * committed all the same (its answer was lost): tried again while its jobs
 * are live, the dedupe key returns them; once they finished, it enqueues
 * them a second time, which the checks allow for those batches only.
 */
function createEnqueuer(db: Db) {
  let next = 0
  let stopped = false
  let stream: Promise<void> = Promise.resolve()
  const acknowledged = new Set<string>()
  /** Dedupe keys of jobs whose enqueue failed at least once. */
  const retried = new Set<string>()
  let failures = 0

  const add = async (n: number): Promise<void> => {
    const specs: EnqueueSpec[] = Array.from({ length: n }, () => {
      const seq = next++
      return { type: 'test.effect', storeId: `store-${seq % 10}`, dedupeKey: `seq-${seq}`, payload: { sleepMs: 20 } }
    })
    for (;;) {
      try {
        for (const r of await enqueueMany(db.kysely, specs)) acknowledged.add(r.job.id)
        return
      } catch (err) {
        if (!isDatabaseUnavailable(err)) throw err
        failures++
        for (const s of specs) retried.add(s.dedupeKey as string)
        await sleep(100)
      }
    }
  }
  return {
    add,
    /** Keeps enqueuing `perTick` jobs every `tickMs` until stop(). */
    startStream(perTick: number, tickMs: number) {
      stream = (async () => {
        while (!stopped) {
          await add(perTick)
          await sleep(tickMs)
        }
      })()
    },
    async stop() {
      stopped = true
      await stream
    },
    get enqueued() {
      return next
    },
    acknowledged,
    retried,
    get failures() {
      return failures
    },
  }
}

describe('worker processes while their PostgreSQL restarts', () => {
  it(
    'complete every job exactly once through a fast and an immediate shutdown, re-listen, re-elect a leader and stop on SIGTERM',
    { timeout: 240_000 * SCALE },
    async () => {
      await t.db.pool.query(CREATE_RUNS)
      const queueUrl = await server().migratedDatabase('queue_under_load')
      const q = connect({ connectionString: queueUrl, max: 3, acquireTimeoutMs: 3_000 })
      opened.push(q)
      const enqueueDb = connect({ connectionString: queueUrl, max: 2, acquireTimeoutMs: 2_000 })
      opened.push(enqueueDb)
      const enqueuer = createEnqueuer(enqueueDb)

      const count = async (text: string, values: unknown[] = []): Promise<number> => Number((await q.pool.query(text, values)).rows[0].n)
      const completedBetween = (from: Date, to: Date) =>
        count('select count(*)::int as n from job_history where finished_at >= $1 and finished_at < $2', [from, to])
      const topUp = async () => {
        const live = await count('select count(*)::int as n from jobs')
        for (let missing = BACKLOG - live; missing > 0; missing -= 500) await enqueuer.add(Math.min(500, missing))
      }
      const lease = async () =>
        (await q.pool.query<{ holder: string; term: string; live: boolean }>('select holder, term::text, expires_at > now() as live from leader_lease'))
          .rows[0]

      await topUp()
      const workers = WORKERS.map((label) =>
        spawnMaintenanceWorker({
          url: queueUrl,
          // The runs are recorded on a server that is not restarted.
          effectsUrl: t.url,
          label,
          concurrency: 4,
          // Short job leases and quick rescues, so a job whose outcome was lost comes back within the test.
          leaseMs: 4_000,
          rescueMs: 500,
          promoteMs: 200,
          electionMs: 300,
          leaderTtlMs: LEADER_TTL_MS,
        }),
      )
      const ready = await Promise.all(workers.map((w) => w.message('ready')))
      expect(ready.filter((r) => r.leader === true)).toHaveLength(1)
      enqueuer.startStream(10, 100)
      const figures: Record<string, unknown> = { scale: SCALE }
      const restarts: Restart[] = []

      await orDescribe(q.pool, workers, async () => {
        await sleep(PHASE.warmupMs)
        const before = { from: new Date(), to: new Date(Date.now() + PHASE.windowMs) }
        await sleep(PHASE.windowMs)
        const doneBefore = await completedBetween(before.from, before.to)
        figures.jobsPerSecBefore = Math.round(doneBefore / (PHASE.windowMs / 1_000))
        figures.backlogAfterWindowBefore = await count('select count(*)::int as n from jobs')

        for (const mode of SHUTDOWN_MODES) {
          await topUp()
          const { holder, term } = (await lease()) ?? {}
          const leaseBefore = { holder, term }
          const downAt = Date.now()
          const f: Restart = { mode, downAt, stoppedAt: 0, upAt: 0 }
          await server().shutDown(mode)
          f.stoppedAt = Date.now()
          f.stopMs = f.stoppedAt - downAt
          f.clusterStateAtStart = server().clusterState()
          expect(f.clusterStateAtStart, `after a ${mode} shutdown`).toBe(mode === 'fast' ? 'shut down' : 'in production')
          await sleep(PHASE.downMs)
          const startAt = Date.now()
          await server().start()
          f.upAt = Date.now()
          f.startMs = f.upAt - startAt
          f.downMs = f.upAt - downAt

          const since = (at: number) => at - f.upAt
          const [resumedAt, listeningAt, leaderAt] = await Promise.all([
            // Work resumes: a job claimed after the restart completes (not only outcomes
            // of runs that ended while the server was down, written on a retry).
            waitFor(async () => ((await count('select count(*)::int as n from job_history where started_at >= $1', [new Date(f.upAt)])) > 0 ? Date.now() : null), {
              timeoutMs: RESUME_WITHIN_MS,
              intervalMs: 100,
              what: `a job claimed and completed within ${RESUME_WITHIN_MS} ms of the ${mode} restart`,
            }),
            // Every worker's listener is back: a session on the new server whose last statement was its LISTEN.
            waitFor(
              async () =>
                (await count(
                  `select count(*)::int as n from pg_stat_activity
                   where datname = current_database() and application_name = 'backroom-listener' and query = $1`,
                  [`listen ${NOTIFY_CHANNEL}`],
                )) === workers.length
                  ? Date.now()
                  : null,
              { timeoutMs: RESUME_WITHIN_MS, intervalMs: 100, what: `every listener listening again after the ${mode} restart` },
            ),
            // A live worker holds a current lease and knows it.
            waitFor(
              async () => {
                const l = await lease()
                const holder = workers.find((w) => `w-${w.label}` === l?.holder)
                return l?.live && holder && holder.process.exitCode === null && isLeader(holder) ? Date.now() : null
              },
              { timeoutMs: RESUME_WITHIN_MS, intervalMs: 100, what: `a live leader after the ${mode} restart` },
            ),
          ])
          f.firstClaimAfterUpMs = Math.round(since(
            Number((await q.pool.query('select (extract(epoch from min(started_at)) * 1000)::float8 as at from job_history where started_at >= $1', [new Date(f.upAt)])).rows[0].at),
          ))
          f.firstRunDoneAfterUpMs = since(resumedAt)
          f.listenersBackMs = since(listeningAt)
          f.leaderBackMs = since(leaderAt)
          const leaseAfter = await lease()
          f.leader = { before: leaseBefore, after: { holder: leaseAfter?.holder, term: leaseAfter?.term } }
          f.termBefore = leaseBefore.term
          f.termAfter = leaseAfter?.term

          await sleep(Math.max(0, resumedAt + PHASE.windowMs - Date.now()))
          const doneAfter = await completedBetween(new Date(resumedAt), new Date(resumedAt + PHASE.windowMs))
          f.jobsPerSecAfter = Math.round(doneAfter / (PHASE.windowMs / 1_000))
          f.throughputRatio = Number((doneAfter / Math.max(1, doneBefore)).toFixed(2))
          f.backlogAfterWindow = await count('select count(*)::int as n from jobs')
          expect(doneAfter).toBeGreaterThan(0)
          // How soon after the restart a window began that ran at 90 % of the throughput
          // before; watched for up to RECOVER_WITHIN_MS (null: not by then).
          f.at90PctMs = await watchRecovery(q.pool, { from: f.upAt, windowMs: PHASE.windowMs, doneBefore, share: 0.9, withinMs: RECOVER_WITHIN_MS })
          restarts.push(f)
        }
      }).finally(() => enqueuer.stop())
      figures.restarts = restarts.map(({ downAt: _d, stoppedAt: _s, upAt: _u, termBefore: _b, termAfter: _a, ...f }) => f)

      // Everything acknowledged gets done; then the queue is empty.
      await orDescribe(q.pool, workers, () =>
        waitFor(async () => (await count('select count(*)::int as n from jobs')) === 0, { timeoutMs: 90_000, intervalMs: 200, what: 'an empty jobs table' }),
      )
      // LISTEN works on the new server: an idle pool (next poll 24-36 s away) runs a new job at once.
      const probeAt = Date.now()
      await enqueuer.add(1)
      await orDescribe(q.pool, workers, () =>
        waitFor(async () => (await count('select count(*)::int as n from jobs')) === 0, {
          timeoutMs: 10_000,
          intervalMs: 20,
          what: 'a job enqueued on an idle queue to run without waiting for a poll',
        }),
      )
      figures.idleWakeMs = Date.now() - probeAt

      // No process died on the way; each stops on SIGTERM, in bounded time.
      for (const w of workers) expect(w.process.exitCode, `${w.label} exited early\n${w.stderr().slice(-4_000)}`).toBeNull()
      const stopStarted = Date.now()
      const exits = await Promise.all(workers.map((w) => terminate(w, 20_000)))
      figures.stopMs = Date.now() - stopStarted
      expect(exits, workers.map((w) => `--- ${w.label}\n${w.stderr().slice(-4_000)}`).join('\n')).toEqual(workers.map(() => ({ code: 0, signal: null })))

      // Every job completed exactly once; every acknowledged enqueue is among them; a dedupe
      // key appears twice only where its enqueue failed and was tried again.
      const history = await q.pool.query(`select state, count(*)::int as n, count(distinct id)::int as ids from job_history group by state`)
      const total = enqueuer.enqueued
      figures.jobs = total
      figures.enqueueFailures = enqueuer.failures
      const again = (
        await q.pool.query<{ key: string; n: number }>(
          `select dedupe_key as key, count(*)::int as n from job_history group by dedupe_key having count(*) > 1`,
        )
      ).rows
      figures.enqueuedTwiceAfterFailure = again.length
      expect(again.filter((r) => !enqueuer.retried.has(r.key))).toEqual([])
      const extra = again.reduce((s, r) => s + r.n - 1, 0)
      expect(history.rows).toEqual([{ state: 'completed', n: total + extra, ids: total + extra }])
      expect(await count('select count(*)::int as n from job_history where id = any($1::bigint[])', [[...enqueuer.acknowledged]])).toBe(
        enqueuer.acknowledged.size,
      )

      // Handler runs, from the record on the other server: every job ran; the completion
      // recorded is the last attempt that ran; no attempt ran twice, save one way, and
      // never at once: a claim committed just before the immediate shutdown, whose
      // commit had not reached the disk (claims commit without waiting for the flush,
      // see CLAIM_SETTINGS), is undone by crash recovery, so the job is claimed again
      // with the same attempt after the restart (its first run ended during the outage).
      const completed = new Map(
        (await q.pool.query<{ id: string; attempt: number }>('select id::text, attempt from job_history')).rows.map((r) => [r.id, r.attempt]),
      )
      const runs = (
        await t.db.pool.query<{ id: string; attempt: number; starts: number[] }>(
          `select job_id::text as id, attempt, array_agg((extract(epoch from started_at) * 1000)::float8 order by started_at) as starts
           from runs group by 1, 2`,
        )
      ).rows
      const crash = restarts.find((r) => r.mode === 'immediate')
      const claimUndoneByCrash = (starts: ReadonlyArray<number>) =>
        crash !== undefined &&
        starts.length === 2 &&
        (starts[0] as number) >= crash.downAt - LOST_CLAIM_WINDOW_MS &&
        (starts[0] as number) < crash.stoppedAt + LOST_CLAIM_WINDOW_MS &&
        (starts[1] as number) >= crash.upAt
      const runsOf = new Map<string, { total: number; last: number; twice: number; undone: number }>()
      for (const r of runs) {
        const s = runsOf.get(r.id) ?? { total: 0, last: 0, twice: 0, undone: 0 }
        const undone = r.starts.length > 1 && claimUndoneByCrash(r.starts)
        runsOf.set(r.id, {
          total: s.total + r.starts.length,
          last: Math.max(s.last, r.attempt),
          twice: s.twice + (r.starts.length > 1 && !undone ? 1 : 0),
          undone: s.undone + (undone ? 1 : 0),
        })
      }
      const ids = [...completed.keys()]
      const verdict = {
        neverRan: ids.filter((id) => !runsOf.has(id)),
        attemptRanTwice: ids.filter((id) => (runsOf.get(id)?.twice ?? 0) > 0),
        completedOtherAttempt: ids.filter((id) => runsOf.has(id) && runsOf.get(id)?.last !== completed.get(id)),
        ranButNotInHistory: [...runsOf.keys()].filter((id) => !completed.has(id)),
      }
      figures.jobsRunMoreThanOnce = ids.filter((id) => (runsOf.get(id)?.total ?? 0) > 1).length
      figures.attemptsRunAgainAfterCrashUndidClaim = [...runsOf.values()].reduce((n, r) => n + r.undone, 0)

      // Leadership: each term belongs to one process; per service, no two passes ever overlapped;
      // no pass of an older term began after a newer term's first pass.
      const passes: PassRecord[] = workers.flatMap(passesOf)
      const termHolders = new Map<number, Set<string>>()
      for (const p of passes) termHolders.set(p.term ?? -1, (termHolders.get(p.term ?? -1) ?? new Set()).add(p.label))
      figures.terms = Object.fromEntries([...termHolders].map(([term, labels]) => [term, [...labels].join(',')]))
      figures.passes = passes.length
      recordFaultFigures('database restart', figures)

      // On failure: the runs of the first few jobs in question, beside when the server went down and came back.
      const suspects = [...new Set([...verdict.attemptRanTwice, ...verdict.completedOtherAttempt])].slice(0, 5)
      const detail = {
        restarts: restarts.map((r) => ({ mode: r.mode, ...Object.fromEntries((['downAt', 'stoppedAt', 'upAt'] as const).map((k) => [k, new Date(r[k]).toISOString()])) })),
        runs: (await t.db.pool.query('select job_id::text, attempt, worker, started_at from runs where job_id = any($1::bigint[]) order by started_at', [suspects])).rows,
        history: (await q.pool.query('select id::text, attempt, started_at, finished_at from job_history where id = any($1::bigint[])', [suspects])).rows,
      }
      expect(verdict, JSON.stringify(detail)).toEqual({ neverRan: [], attemptRanTwice: [], completedOtherAttempt: [], ranButNotInHistory: [] })
      expect(passes.filter((p) => p.term === undefined)).toEqual([])
      expect([...termHolders.values()].filter((labels) => labels.size > 1)).toEqual([])
      expect(overlappingPasses(passes)).toEqual([])
      const firstOfTerm = new Map<number, number>()
      for (const p of passes) firstOfTerm.set(p.term as number, Math.min(firstOfTerm.get(p.term as number) ?? Infinity, p.startedAt))
      const late = passes.filter((p) => [...firstOfTerm].some(([term, first]) => term > (p.term as number) && p.startedAt >= first))
      expect(late, 'a pass of an older term started after a newer term began').toEqual([])
      // Each restart cost the leader its term (the downtime outlasts the lease), and a live process took up the next.
      expect(restarts.filter((r) => !(Number(r.termAfter) > Number(r.termBefore))).map((r) => r.leader)).toEqual([])
    },
  )
})

describe('a worker pool whose claims failed while PostgreSQL was down', () => {
  it('claims again as soon as its listener is back, not at the end of its claim backoff', { timeout: 60_000 }, async () => {
    // Up again if the test before failed while it was down.
    if (!server().running) await server().start()
    const url = await server().migratedDatabase('wake_after_restart')
    const records: Array<Record<string, unknown>> = []
    const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) })
    const logged = (msg: string, component?: string) => records.filter((r) => r.msg === msg && (component === undefined || r.component === component))
    const db = connect({ connectionString: url, max: 2 })
    opened.push(db)
    let ranAt = 0
    const pool = createWorkerPool({
      db: db.kysely,
      connectionString: url,
      handlers: [defineHandler({ type: 'test.wake', payload: Type.Object({}), run: async () => void (ranAt ||= Date.now()) })],
      concurrency: 1,
      // Polls often, so the producer keeps claiming (and failing) while the server is down.
      pollIntervalMs: 100,
      maintenance: false,
      watchdog: false,
      log,
    })
    await pool.start()
    try {
      await server().shutDown('fast')
      // Each failed claim doubles the pause before the next; after this many the pause is seconds long.
      await waitFor(() => logged('claim failed', 'producer').length >= CLAIM_FAILURES_BEFORE_RESTART, {
        timeoutMs: 30_000,
        what: `${CLAIM_FAILURES_BEFORE_RESTART} failed claims`,
      })
      await server().start()
      await enqueue(db.kysely, { type: 'test.wake', storeId: 'store-1' })
      await waitFor(() => ranAt > 0, { timeoutMs: 30_000, what: 'the job enqueued after the restart to run' })
      const reconnectedAt = Number(logged('listener reconnected')[0]?.time)
      const failures = logged('claim failed', 'producer')
      const figures = {
        failedClaims: failures.length,
        listenerBackToRunMs: ranAt - reconnectedAt,
        lastFailureToRunMs: ranAt - Number(failures.at(-1)?.time),
      }
      recordFaultFigures('database restart: claim after reconnect', figures)
      // The reconnected listener wakes the producer, which claims at once: the
      // wait left on its backoff (seconds by now) does not hold the job back.
      expect(reconnectedAt).toBeGreaterThan(0)
      expect(figures.listenerBackToRunMs).toBeLessThan(WAKE_TO_RUN_WITHIN_MS)
      expect(failures.length).toBe(CLAIM_FAILURES_BEFORE_RESTART)
    } finally {
      await pool.stop()
    }
  })
})

/** Pairs of passes of one service whose run times overlap (by wall clock; all processes share the machine's). */
function overlappingPasses(passes: ReadonlyArray<PassRecord>): Array<[PassRecord, PassRecord]> {
  const found: Array<[PassRecord, PassRecord]> = []
  const byService = new Map<string, PassRecord[]>()
  for (const p of passes) byService.set(p.service, [...(byService.get(p.service) ?? []), p])
  for (const list of byService.values()) {
    const sorted = [...list].sort((a, b) => a.startedAt - b.startedAt)
    let latest: PassRecord | null = null
    for (const p of sorted) {
      if (latest && p.startedAt < latest.endedAt) found.push([latest, p])
      if (!latest || p.endedAt > latest.endedAt) latest = p
    }
  }
  return found
}
