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
import { startPeerWorkers } from './peer-children.ts'
import type { BenchJob, BenchSystem, BenchWorkers } from './system.ts'
import { explainAnalyze, fillInBatches, waitFor, type CapturedFetch, type CapturedQuery } from './scale-hooks.ts'

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

/** Fetch batch EXPLAINed by explainFetch (the same 100 for every system; the fast variant's workers use batchSize = concurrency). */
const EXPLAIN_BATCH = 100

/**
 * Captures pg-boss's fetch exactly as `work()` sends it. `fetch()` takes a
 * per-call `db` (`ConnectionOptions.db`, an `IDatabase`) and builds the statement
 * with the same `plans.fetchNextJob` and options `work()` uses (its extra keys,
 * `priority`/`orderByCreatedOn: true` and `includeMetadata: false`, are the
 * defaults); an `IDatabase` that records instead of executing hands back the text
 * and parameters without claiming anything.
 */
async function captureFetch(boss: PgBoss): Promise<CapturedFetch> {
  let statement: CapturedQuery | null = null
  await boss.fetch(QUEUE, {
    batchSize: EXPLAIN_BATCH,
    db: {
      async executeSql(text: string, values?: unknown[]) {
        statement ??= { text, values: [...(values ?? [])] }
        return { rows: [] }
      },
    },
  })
  return { setup: [], statement: await waitFor(() => statement, 'the pg-boss fetch statement', 1_000) }
}

function pgBoss(variant: PgBossVariant): BenchSystem {
  let boss: PgBoss | null = null
  let pool: pg.Pool | null = null
  let url = ''
  let enqueued = 0
  let lastHandled: () => Promise<number> = async () => 0
  /** The captured fetch, once (see captureFetch). */
  let fetchStatement: CapturedFetch | null = null
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
      const workers = await startPeerWorkers({
        spec: { system: 'pgboss', variant, url, concurrency },
        processes,
        onStart,
        connect: (onJob) => connectPgBossWorker({ url, variant, concurrency, onJob }),
      })
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
    /**
     * Inserts `n` completed jobs of the bench queue where pg-boss 12.x keeps them:
     * there is no archive table in 12.x; a completed job stays in the queue's job
     * table (`pgboss.queue.table_name`, `job_common` for a queue created without
     * `partition: true`) with state `completed` until `completed_on +
     * deletion_seconds` (7 days by default) has passed. Rows copy the queue's
     * settings the way plans.insertJobs does, and completed_on rises evenly over the
     * 7 days up to now, so retention deletes none of them during a run of
     * less than that. retry_count 0 and unique ids keep anomalies() at 0.
     */
    async fillFinished(n) {
      if (n <= 0) return
      const counting = mustPool()
      const { rows } = await counting.query<{ table_name: string }>(`select table_name from pgboss.queue where name = $1`, [QUEUE])
      const table = rows[0]?.table_name
      if (!table || !/^[a-z0-9_]+$/.test(table)) throw new Error(`unexpected pg-boss table for ${QUEUE}: ${table}`)
      await fillInBatches(`pgboss-${variant} ${table}`, n, async (from, to) => {
        await counting.query(
          `insert into pgboss."${table}" (id, name, data, priority, state, start_after, created_on, started_on, completed_on,
                                         expire_seconds, deletion_seconds, keep_until, retry_limit, retry_delay, retry_backoff,
                                         retry_delay_max, policy, dead_letter, heartbeat_seconds, heartbeat_on)
           select gen_random_uuid(), q.name,
                  jsonb_build_object('storeId', 'store-' || (g % 100), 'payload', jsonb_build_object('i', g)), 0, 'completed',
                  f - interval '2 s', f - interval '2 s', f - interval '1 s', f,
                  q.expire_seconds, q.deletion_seconds, f - interval '2 s' + q.retention_seconds * interval '1 s',
                  q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter,
                  q.heartbeat_seconds, f - interval '1 s'
           from pgboss.queue q,
                (select g, now() - interval '7 days' + (g::float8 / $4) * interval '7 days' as f
                   from generate_series($2::bigint, $3::bigint) g) s
           where q.name = $1`,
          [QUEUE, from, to, n],
        )
      })
    },
    /**
     * EXPLAIN (ANALYZE, BUFFERS) of one fetch of up to 100 jobs of the bench queue,
     * the statement captured from pg-boss itself (see captureFetch), run on the
     * adapter's own pool and rolled back.
     */
    async explainFetch() {
      fetchStatement ??= await captureFetch(mustBoss())
      return explainAnalyze(mustPool(), fetchStatement)
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
