// pg-boss 12.x with its nearest feature to fair ordering between stores: group
// concurrency (pg-boss 12.38.0 `dist/types.d.ts`: `JobOptions.group: { id, tier? }` on
// send/insert, `WorkConcurrencyOptions.groupConcurrency` on work(), enforced in the
// database across nodes). Every job is inserted with `group: { id: storeId }`, and the
// worker caps the jobs of one group running at once at `groupCap`. It is a cap, not a
// fair share: claim order stays creation order, and a store under its cap still takes
// every slot the others leave free.
//
// How the worker runs: a cap only binds across fetchers holding jobs at the same time
// (a fetch skips groups at their cap in the `active` state, and a batch stays active until
// its handler returns), so the worker is two fetchers (`localConcurrency: 2`) of
// `batchSize: concurrency / 2` each, with the cap at `concurrency / 2` by default: one store
// can fill at most one fetcher's batch, the other fetcher takes the other stores. Otherwise
// the settings of the `pgboss` (fast) system: LISTEN/NOTIFY on, `burstWhenBatchFull: true`,
// both poll intervals at their minimum of 0.5 s. (A batch cut short by the cap is not full,
// so the fetcher that got it waits out the 0.5 s poll interval before its next fetch.)
//
// completed() and anomalies() are those of the `pgboss` system (see pg-boss.ts).
// Only one worker process is supported (the noisy-neighbour workload uses one).
import pg from 'pg'
import { PgBoss, type WorkOptions } from 'pg-boss'
import type { BenchJob, BenchSystem, BenchWorkers } from './system.ts'

interface BenchData {
  readonly storeId: string
  readonly payload: Record<string, unknown>
}

const QUEUE = 'bench-noop'
const BULK_CHUNK = 5_000

/** Options of the grouped pg-boss system. */
export interface PgBossGroupsOptions {
  /** Jobs of one group (store) running at once; default: half the worker's concurrency, at least 1. */
  readonly groupCap?: (concurrency: number) => number
  /** Fetchers (`localConcurrency`); each fetches `concurrency / fetchers` jobs at a time. Default 2. */
  readonly fetchers?: number
}

/** The default cap: half the slots, so one store can never hold more than half the worker. */
export const halfTheSlots = (concurrency: number): number => Math.max(1, Math.floor(concurrency / 2))

function newBoss(url: string): PgBoss {
  const boss = new PgBoss({
    connectionString: url,
    useListenNotify: true,
  })
  boss.on('error', (error) => process.stderr.write(`[pgboss-groups] pg-boss error: ${error.message}\n`))
  return boss
}

/** pg-boss with the store as job group and a per-group concurrency cap (see the file comment). */
export function pgBossGroups(options: PgBossGroupsOptions = {}): BenchSystem {
  const capOf = options.groupCap ?? halfTheSlots
  let boss: PgBoss | null = null
  let pool: pg.Pool | null = null
  let url = ''
  let enqueued = 0
  let handledSoFar = 0
  const mustBoss = () => {
    if (!boss) throw new Error('setup first')
    return boss
  }
  const mustPool = () => {
    if (!pool) throw new Error('setup first')
    return pool
  }
  return {
    name: 'pgboss-groups',
    get url() {
      return url
    },
    async setup(u) {
      url = u
      boss = newBoss(u)
      await boss.start()
      await boss.createQueue(QUEUE, { notify: true })
      pool = new pg.Pool({ connectionString: u, max: 2 })
      const counting = pool
      counting.on('error', (error) => {
        if (!counting.ending) process.stderr.write(`[pgboss-groups] idle client error: ${error.message}\n`)
      })
    },
    async enqueueBulk(jobs) {
      for (let i = 0; i < jobs.length; i += BULK_CHUNK) {
        const chunk = jobs.slice(i, i + BULK_CHUNK)
        await mustBoss().insert(
          QUEUE,
          chunk.map((j) => ({ data: { storeId: j.storeId, payload: j.payload }, group: { id: j.storeId } })),
        )
        enqueued += chunk.length
      }
    },
    async enqueueOne(job: BenchJob) {
      await mustBoss().send(QUEUE, { storeId: job.storeId, payload: job.payload }, { group: { id: job.storeId } })
      enqueued++
    },
    async startWorkers({ concurrency, processes, onStart }): Promise<BenchWorkers> {
      if (processes !== 1) throw new Error('pgboss-groups runs one worker process only')
      const worker = newBoss(url)
      await worker.start()
      const fetchers = Math.min(concurrency, options.fetchers ?? 2)
      const work: WorkOptions = {
        localConcurrency: fetchers,
        batchSize: Math.max(1, Math.floor(concurrency / fetchers)),
        groupConcurrency: capOf(concurrency),
        burstWhenBatchFull: true,
        pollingIntervalSeconds: 0.5,
        notifyPollingIntervalSeconds: 0.5,
      }
      handledSoFar = 0
      await worker.work<BenchData>(QUEUE, work, async (jobs) => {
        for (const job of jobs) {
          handledSoFar++
          onStart?.(job.data.payload)
        }
      })
      return {
        handled: async () => handledSoFar,
        stop: () => worker.stop({ graceful: true, close: true }),
      }
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
      return (rows[0]?.n ?? 0) + Math.max(0, handledSoFar - enqueued)
    },
    async close() {
      await boss?.stop({ graceful: true, close: true })
      await pool?.end()
      boss = null
      pool = null
    },
  }
}
