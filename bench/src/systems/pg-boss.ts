// pg-boss 12.x as a bench peer, in two variants:
//
// * "fast" (`pgBossFast`, system name `pgboss`): the settings pg-boss documents for
//   throughput and low pickup latency. Sources: the JSDoc of pg-boss 12.38.0's
//   `dist/types.d.ts` (`ConstructorOptions.useListenNotify`, `Queue.notify`,
//   `JobPollingOptions`, `JobFetchOptions.batchSize`) and docs/api/workers.md of the
//   12.37.0 tag (pgboss.io/api/workers). Constructor `useListenNotify: true` plus queue
//   `notify: true` wake idle workers on insert; `work()` gets `batchSize: concurrency`
//   (one worker fetches and completes `concurrency` jobs per round trip),
//   `burstWhenBatchFull: true` (re-fetch at once while fetches come back full),
//   and both poll intervals at their documented minimum of 0.5 s.
// * "defaults" (`pgBossDefaults`, system name `pgboss-defaults`): nothing set except the
//   concurrency, expressed the documented way as `localConcurrency: concurrency`
//   (batchSize 1, pollingIntervalSeconds 2, no LISTEN/NOTIFY). pg-boss's worker loop
//   waits out the polling interval after every fetch, full or not, so this variant
//   drains at most `concurrency / 2` jobs per second per process by design.
//
// How "completed" is measured: pg-boss keeps a completed job in its job table
// (`pgboss.job`, state `completed`) until `deleteAfterSeconds` (7 days by default)
// have passed, so completed() counts those rows for the bench queue. A row only
// reaches `completed` when the worker's completion statement has committed.
// anomalies() counts rows that were claimed more than once (pg-boss bumps
// `retry_count` on every re-claim of a job that had started), rows that ended
// failed/retry/cancelled, duplicate ids, and handler calls beyond the jobs enqueued.
import pg from 'pg'
import { PgBoss, type ConstructorOptions, type Queue, type WorkOptions } from 'pg-boss'
import { spawnPeerChildren } from './peer-children.ts'
import type { BenchJob, BenchSystem, BenchWorkers } from './system.ts'

/** The two ways pg-boss is run in the bench. */
export type PgBossVariant = 'fast' | 'defaults'

/** pg-boss stores the whole job as `data`; the store id travels beside the payload. */
interface BenchData {
  readonly storeId: string
  readonly payload: Record<string, unknown>
}

const QUEUE = 'bench-noop'
/** Same chunk size as Backroom's adapter, so both bulk paths send statements of equal size. */
const BULK_CHUNK = 5_000

function constructorOptions(url: string, variant: PgBossVariant): ConstructorOptions {
  return variant === 'fast' ? { connectionString: url, useListenNotify: true } : { connectionString: url }
}

function queueOptions(variant: PgBossVariant): Omit<Queue, 'name'> {
  return variant === 'fast' ? { notify: true } : {}
}

function workOptions(variant: PgBossVariant, concurrency: number): WorkOptions {
  if (variant === 'defaults') return { localConcurrency: concurrency }
  return {
    batchSize: concurrency,
    burstWhenBatchFull: true,
    pollingIntervalSeconds: 0.5,
    // Used instead of pollingIntervalSeconds while NOTIFY is live; a backstop only,
    // but set to the minimum too so a missed notification costs at most 0.5 s.
    notifyPollingIntervalSeconds: 0.5,
  }
}

/** pg-boss emits `error` and would throw if nobody listened; keep it visible but off stdout. */
function reportErrors(boss: PgBoss, label: string): void {
  boss.on('error', (error) => process.stderr.write(`[${label}] pg-boss error: ${error.message}\n`))
  boss.on('warning', (warning) => {
    // The fast variant silently degrading to polling would make its numbers a lie.
    const type = (warning.data as { type?: string }).type
    if (type === 'listen_notify_unavailable') process.stderr.write(`[${label}] pg-boss warning: ${warning.message}\n`)
  })
}

/** A pg-boss instance that works the bench queue once started. */
export interface PgBossWorker {
  /** Registers the worker; fetching begins at once. */
  start(): Promise<void>
  /** Stops fetching, waits for running handlers, closes the pool. */
  stop(): Promise<void>
}

/**
 * Connects a pg-boss instance with the variant's settings (schema already installed)
 * and returns a handle that starts working only when asked, so connecting and the
 * version check stay outside the timed window. `onJob` runs once per job, with its
 * payload, inside the no-op handler.
 */
export async function connectPgBossWorker(opts: {
  url: string
  variant: PgBossVariant
  concurrency: number
  onJob: (payload: Record<string, unknown>) => void
}): Promise<PgBossWorker> {
  const boss = new PgBoss(constructorOptions(opts.url, opts.variant))
  reportErrors(boss, `pgboss-${opts.variant} worker`)
  await boss.start()
  return {
    async start() {
      await boss.work<BenchData>(QUEUE, workOptions(opts.variant, opts.concurrency), async (jobs) => {
        // A batch completes as one unit once this resolves; count each job in it.
        for (const job of jobs) opts.onJob(job.data.payload)
      })
    },
    async stop() {
      await boss.stop({ graceful: true, close: true })
    },
  }
}

function pgBoss(variant: PgBossVariant): BenchSystem {
  let boss: PgBoss | null = null
  let pool: pg.Pool | null = null
  let url = ''
  let enqueued = 0
  let lastHandled: () => Promise<number> = async () => 0
  const mustBoss = () => {
    if (!boss) throw new Error('setup first')
    return boss
  }
  const mustPool = () => {
    if (!pool) throw new Error('setup first')
    return pool
  }
  return {
    name: variant === 'fast' ? 'pgboss' : 'pgboss-defaults',
    async setup(u) {
      url = u
      boss = new PgBoss(constructorOptions(u, variant))
      reportErrors(boss, `pgboss-${variant}`)
      // start() installs the schema on first use.
      await boss.start()
      await boss.createQueue(QUEUE, queueOptions(variant))
      // Counting queries go through a pool of our own, not pg-boss's.
      pool = new pg.Pool({ connectionString: u, max: 2 })
      // Without a listener, an idle connection the server ends would crash the run; once the
      // pool is ending, the bench's force-drop of the database can still hit its sockets.
      const counting = pool
      counting.on('error', (error) => {
        if (!counting.ending) process.stderr.write(`[pgboss-${variant}] idle client error: ${error.message}\n`)
      })
    },
    async enqueueBulk(jobs) {
      for (let i = 0; i < jobs.length; i += BULK_CHUNK) {
        const chunk = jobs.slice(i, i + BULK_CHUNK)
        await mustBoss().insert(
          QUEUE,
          chunk.map((j) => ({ data: { storeId: j.storeId, payload: j.payload } })),
        )
        enqueued += chunk.length
      }
    },
    async enqueueOne(job: BenchJob) {
      await mustBoss().send(QUEUE, { storeId: job.storeId, payload: job.payload })
      enqueued++
    },
    async startWorkers({ concurrency, processes, onStart }): Promise<BenchWorkers> {
      let workers: BenchWorkers
      if (processes === 1) {
        let handled = 0
        const worker = await connectPgBossWorker({
          url,
          variant,
          concurrency,
          onJob: (payload) => {
            handled++
            onStart?.(payload)
          },
        })
        await worker.start()
        workers = { handled: async () => handled, stop: () => worker.stop() }
      } else {
        workers = await spawnPeerChildren({ system: 'pgboss', variant, url, concurrency }, processes)
      }
      lastHandled = workers.handled
      return workers
    },
    async completed() {
      const { rows } = await mustPool().query<{ n: number }>(
        `select count(*)::int as n from pgboss.job where name = $1 and state = 'completed'`,
        [QUEUE],
      )
      return rows[0]?.n ?? 0
    },
    async anomalies() {
      const { rows } = await mustPool().query<{ n: number }>(
        `select (count(*) filter (where retry_count > 0 or state in ('retry', 'failed', 'cancelled'))
                 + (count(*) - count(distinct id)))::int as n
           from pgboss.job where name = $1`,
        [QUEUE],
      )
      const overrun = Math.max(0, (await lastHandled()) - enqueued)
      return (rows[0]?.n ?? 0) + overrun
    },
    async close() {
      await boss?.stop({ graceful: true, close: true })
      await pool?.end()
      boss = null
      pool = null
    },
  }
}

/** pg-boss with its documented fastest settings (see the file comment). */
export function pgBossFast(): BenchSystem {
  return pgBoss('fast')
}

/** pg-boss with default settings; only the concurrency is set (see the file comment). */
export function pgBossDefaults(): BenchSystem {
  return pgBoss('defaults')
}
