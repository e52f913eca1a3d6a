// graphile-worker 0.18.x as a bench peer, in two variants:
//
// * "fast" (`graphileFast`, system name `graphile`): the configuration that
//   worker.graphile.org/docs/performance gives for its headline numbers
//   (`concurrentJobs`, `maxPoolSize: concurrentJobs + 1`, `localQueue: { size: 500 }`,
//   `completeJobBatchDelay: 0`, `failJobBatchDelay: 0`), plus `preparedStatements: true`
//   and `pollInterval: 2000`, both their documented defaults, set explicitly. The poll
//   interval stays at 2 s because graphile-worker learns of new jobs through
//   LISTEN/NOTIFY in every configuration; its JSDoc says polling is only for jobs
//   scheduled in the future and for retries, and a drain has neither.
// * "defaults" (`graphileDefaults`, system name `graphile-defaults`): nothing set except
//   `concurrentJobs` (pool of 10, no local queue, one completion statement per job).
//
// How "completed" is measured: graphile-worker deletes a job's row when the
// job completes and keeps no history, so there is no completed row to count. This
// adapter counts the jobs it enqueued, and completed() = enqueued - rows still in
// `graphile_worker.jobs` for the bench task. A failed job stays in the table (attempts
// and last_error set, run_at pushed back), so it is not counted; a job only leaves
// the table once its completion statement (batched when completeJobBatchDelay >= 0)
// has committed. anomalies() counts remaining rows that were attempted more than
// once or carry an error, plus handler calls beyond the jobs enqueued: with every
// row gone, handled = enqueued is what shows each job ran exactly once.
import pg from 'pg'
import { Logger, makeWorkerUtils, run, type Runner, type WorkerUtils } from 'graphile-worker'
import { startPeerWorkers } from './peer-children.ts'
import type { BenchJob, BenchSystem, BenchWorkers } from './system.ts'
import { progress } from '../progress.ts'
import { explainAnalyze, recordQueries, sameValue, waitFor, withValue, type CapturedFetch } from './scale-hooks.ts'

/** The two ways graphile-worker is run in the bench. */
export type GraphileVariant = 'fast' | 'defaults'

/** The job payload: the store id travels beside the bench payload. */
interface BenchPayload {
  readonly storeId: string
  readonly payload: Record<string, unknown>
}

const TASK = 'bench_noop'
/** Same chunk size as Backroom's adapter, so both bulk paths send statements of equal size. */
const BULK_CHUNK = 5_000
/** graphile-worker's default `maxPoolSize` (WorkerPreset in 0.18.0). */
const DEFAULT_MAX_POOL_SIZE = 10

/**
 * graphile-worker logs INFO lines to stdout by default, which would clutter the
 * results table and the children's `handled N` protocol; only errors are kept, on stderr.
 */
const quietLogger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`[graphile-worker] ${message}\n`)
})

function workerOptions(variant: GraphileVariant, concurrency: number): GraphileConfig.WorkerOptions {
  if (variant === 'defaults') return { concurrentJobs: concurrency, logger: quietLogger }
  return {
    concurrentJobs: concurrency,
    maxPoolSize: concurrency + 1,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    preparedStatements: true,
    pollInterval: 2_000,
    logger: quietLogger,
  }
}

/**
 * A pool shaped like the one graphile-worker builds from a connection string, with the
 * idle and client error handlers it insists on for a pool it is handed (it warns on
 * the console otherwise).
 */
function newPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max })
  // pool.end() resolves before the sockets close, so the bench's force-drop of the
  // database can still hit them; errors on a pool we are ending are expected noise.
  const report = (error: Error) => {
    if (!pool.ending) process.stderr.write(`[graphile-worker] connection error: ${error.message}\n`)
  }
  pool.on('error', report)
  pool.on('connect', (client) => client.on('error', report))
  return pool
}

/** A graphile-worker runner for the bench task, connected but not yet started. */
export interface GraphileWorker {
  /** Starts the runner; it begins fetching at once. */
  start(): Promise<void>
  /** Shuts the runner down gracefully and closes its pool. */
  stop(): Promise<void>
}

/**
 * Creates and connects the pool a graphile-worker runner will use (the same
 * `{ connectionString, max: maxPoolSize }` pool graphile-worker would build itself), so
 * connecting stays outside the timed window; `start()` then runs the runner (its
 * migration check, LISTEN and workers). `onJob` runs once per job with its payload.
 */
export async function connectGraphileWorker(opts: {
  url: string
  variant: GraphileVariant
  concurrency: number
  onJob: (payload: Record<string, unknown>) => void
}): Promise<GraphileWorker> {
  const options = workerOptions(opts.variant, opts.concurrency)
  const pgPool = newPool(opts.url, options.maxPoolSize ?? DEFAULT_MAX_POOL_SIZE)
  const client = await pgPool.connect()
  client.release()
  let runner: Runner | null = null
  return {
    async start() {
      runner = await run({
        pgPool,
        noHandleSignals: true,
        taskList: {
          [TASK]: (payload) => {
            opts.onJob((payload as BenchPayload).payload)
          },
        },
        preset: { worker: options },
      })
    },
    async stop() {
      await runner?.stop()
      await pgPool.end()
    },
  }
}

/** Fetch batch EXPLAINed by explainFetch (the same 100 for every system; see captureFetch). */
const EXPLAIN_BATCH = 100
/** A task no bench job has: the probe's fetch matches nothing, so capturing it changes nothing. */
const PROBE_TASK = 'bench_explain_probe'

/**
 * Captures graphile-worker's job fetch as its runner sends it. The SQL is built by
 * `batchGetJobs` (dist/sql/getJobs.js), which is not exported; so a throwaway
 * runner on an instrumented pool, whose task list holds only `PROBE_TASK`, makes
 * its first fetch and the statement is recorded: the one bound to the probe's
 * task id array (`$2`). The bench task's id is swapped in, so the result is the
 * fetch a runner of the bench task sends. The batch is `EXPLAIN_BATCH` through
 * `localQueue.size` (the batch size getJobs puts into `limit`), for a like-for-like
 * comparison with the other systems; the real fast variant fetches 500 (its
 * local queue) and the defaults variant 1 (no local queue, the unbatched form
 * without the per-queue dedupe CTE). graphile-worker runs it as a named prepared
 * statement; EXPLAIN with parameters plans it as a custom plan, which is also
 * what the first five executions of a prepared statement get. The probe leaves
 * one trace: its task's row in `_private_tasks`.
 */
async function captureFetch(url: string, benchPool: pg.Pool): Promise<CapturedFetch> {
  const probePool = newPool(url, 2)
  const seen = recordQueries(probePool)
  let runner: Runner | null = null
  try {
    runner = await run({
      pgPool: probePool,
      noHandleSignals: true,
      taskList: { [PROBE_TASK]: () => {} },
      preset: {
        worker: {
          concurrentJobs: 1,
          localQueue: { size: EXPLAIN_BATCH },
          preparedStatements: true,
          pollInterval: 2_000,
          logger: quietLogger,
        },
      },
    })
    const { rows } = await probePool.query<{ id: number }>(
      `select id from graphile_worker._private_tasks where identifier = $1`,
      [PROBE_TASK],
    )
    const probeIds = rows.map((r) => r.id)
    const fetch = await waitFor(
      () => seen.find((q) => q.values.some((v) => sameValue(v, probeIds)) && /skip locked/i.test(q.text)) ?? null,
      "the probe runner's first job fetch",
    )
    const bench = await benchPool.query<{ id: number }>(
      `select id from graphile_worker._private_tasks where identifier = $1`,
      [TASK],
    )
    // No row: nothing of the bench task was ever added, so an empty id array is the honest fetch.
    return { setup: [], statement: withValue(fetch, probeIds, bench.rows.map((r) => r.id)) }
  } finally {
    await runner?.stop()
    await probePool.end()
  }
}

function graphile(variant: GraphileVariant): BenchSystem {
  let utils: WorkerUtils | null = null
  let pool: pg.Pool | null = null
  let url = ''
  let enqueued = 0
  let lastHandled: () => Promise<number> = async () => 0
  /** The captured fetch, once (see captureFetch). */
  let fetchStatement: CapturedFetch | null = null
  const mustUtils = () => {
    if (!utils) throw new Error('setup first')
    return utils
  }
  const mustPool = () => {
    if (!pool) throw new Error('setup first')
    return pool
  }
  return {
    name: variant === 'fast' ? 'graphile' : 'graphile-defaults',
    async setup(u) {
      url = u
      // The pool is ours, not graphile-worker's: WorkerUtils.release() ends a pool it built
      // without waiting, and the force-drop of the database right after close() then kills
      // a connection on a pool with no error listener, which crashes the process.
      pool = newPool(u, DEFAULT_MAX_POOL_SIZE)
      // One shared WorkerUtils for every enqueue: quickAddJob/addJobAdhoc builds and tears
      // down a pool per call, and its own JSDoc says to use WorkerUtils instead.
      utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger })
      await utils.migrate()
    },
    async enqueueBulk(jobs) {
      for (let i = 0; i < jobs.length; i += BULK_CHUNK) {
        const chunk = jobs.slice(i, i + BULK_CHUNK)
        await mustUtils().addJobs(chunk.map((j) => ({ identifier: TASK, payload: { storeId: j.storeId, payload: j.payload } })))
        enqueued += chunk.length
      }
    },
    async enqueueOne(job: BenchJob) {
      await mustUtils().addJob(TASK, { storeId: job.storeId, payload: job.payload })
      enqueued++
    },
    async startWorkers({ concurrency, processes, onStart }): Promise<BenchWorkers> {
      const workers = await startPeerWorkers({
        spec: { system: 'graphile', variant, url, concurrency },
        processes,
        onStart,
        connect: (onJob) => connectGraphileWorker({ url, variant, concurrency, onJob }),
      })
      lastHandled = workers.handled
      return workers
    },
    async completed() {
      const { rows } = await mustPool().query<{ n: number }>(
        `select count(*)::int as n from graphile_worker.jobs where task_identifier = $1`,
        [TASK],
      )
      return enqueued - (rows[0]?.n ?? 0)
    },
    async anomalies() {
      const { rows } = await mustPool().query<{ n: number }>(
        `select count(*)::int as n from graphile_worker.jobs
          where task_identifier = $1 and (attempts > 1 or last_error is not null)`,
        [TASK],
      )
      const overrun = Math.max(0, (await lastHandled()) - enqueued)
      return (rows[0]?.n ?? 0) + overrun
    },
    async close() {
      await utils?.release()
      await pool?.end()
      utils = null
      pool = null
    },
    /**
     * Adds nothing, by design: graphile-worker deletes a job's row when it
     * completes and has no archive or history table, so `graphile_worker.jobs`
     * only ever holds live jobs (queued, running, or failed and waiting to retry).
     * Finished-job volume cannot slow its fetch because it keeps none; the scale
     * workload runs it with an empty history as the comparison point.
     */
    async fillFinished(n) {
      if (n > 0) progress(`${variant === 'fast' ? 'graphile' : 'graphile-defaults'}: no history table (completed jobs are deleted); ${n.toLocaleString('en-US')} finished jobs not stored`)
    },
    /**
     * EXPLAIN (ANALYZE, BUFFERS) of one fetch of up to 100 bench jobs, the statement
     * captured from a real runner (see captureFetch), run on the adapter's pool
     * and rolled back.
     */
    async explainFetch() {
      fetchStatement ??= await captureFetch(url, mustPool())
      return explainAnalyze(mustPool(), fetchStatement)
    },
  }
}

/** graphile-worker with the settings of its performance page (see the file comment). */
export function graphileFast(): BenchSystem {
  return graphile('fast')
}

/** graphile-worker with default settings; only the concurrency is set (see the file comment). */
export function graphileDefaults(): BenchSystem {
  return graphile('defaults')
}
