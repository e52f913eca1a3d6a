import { fileURLToPath } from 'node:url'
import { configureJobType, createWorkerPool, connect, defineHandler, enqueue, enqueueMany, explainClaim, migrate, type Db } from '@backroom/queue-core'
import { Type } from 'typebox'
import type { BenchJob, BenchSystem, BenchWorkers } from './system.ts'
import { spawnWorkerChildren } from './peer-children.ts'
import { fillInBatches } from './scale-hooks.ts'

const CHILD = fileURLToPath(new URL('../worker-child.ts', import.meta.url))

/** The no-op job type every Backroom bench worker runs. */
export function benchHandler(onStart?: (payload: Record<string, unknown>) => void) {
  return defineHandler({
    type: 'bench.noop',
    payload: Type.Record(Type.String(), Type.Unknown()),
    run(payload) {
      onStart?.(payload)
    },
  })
}

/** Claim batch EXPLAINed by explainFetch (the same 100 for every system). */
const EXPLAIN_BATCH = 100

/** Options of the Backroom bench system. */
export interface BackroomBenchOptions {
  /** Jobs a pool holds claimed beyond its slots. */
  readonly prefetch?: number
  /**
   * Plain FIFO, for comparison: every job is enqueued under one store id, so
   * fair ordering between stores has nothing to act on and claim order is
   * enqueue order. The real store stays in the payload (`payload.store`).
   */
  readonly fifo?: boolean
  /**
   * Concurrency limits on bench.noop (default `none`). `loose` sets a platform
   * and a per-store limit far above what the workers can hold at once, so they
   * never bind but every claim takes the limited path (limits suite).
   */
  readonly limits?: 'none' | 'loose'
  /** Name in result tables (default `backroom`, or `backroom-fifo`, or `backroom-limits`). */
  readonly name?: string
}

/** Backroom: fair claim order between stores and batched completions. */
export function backroom(options: BackroomBenchOptions = {}): BenchSystem {
  const storeOf = (job: BenchJob) => (options.fifo ? 'fifo' : job.storeId)
  const payloadOf = (job: BenchJob) => (options.fifo ? { ...job.payload, store: job.storeId } : job.payload)
  let db: Db | null = null
  let url = ''
  /** The captured claim, once (see captureClaim); it depends only on the code, not the data. */
  const must = () => {
    if (!db) throw new Error('setup first')
    return db
  }
  return {
    name: options.name ?? (options.fifo ? 'backroom-fifo' : options.limits === 'loose' ? 'backroom-limits' : 'backroom'),
    async setup(u) {
      url = u
      await migrate({ connectionString: u })
      db = connect({ connectionString: u, max: 8 })
      // Before any worker starts, so its first read of the limits sees them. 100,000
      // per store and 1,000,000 in all: a 100,000-job drain never reaches either,
      // even with every job claimed at once.
      if (options.limits === 'loose') {
        await configureJobType(db.kysely, 'bench.noop', { maxRunningPerStore: 100_000, maxRunning: 1_000_000 })
      }
    },
    async enqueueBulk(jobs) {
      for (let i = 0; i < jobs.length; i += 5_000) {
        await enqueueMany(
          must().kysely,
          jobs.slice(i, i + 5_000).map((j) => ({ type: 'bench.noop', storeId: storeOf(j), payload: payloadOf(j) })),
        )
      }
    },
    async enqueueOne(job: BenchJob) {
      await enqueue(must().kysely, { type: 'bench.noop', storeId: storeOf(job), payload: payloadOf(job) })
    },
    async startWorkers({ concurrency, processes, onStart }): Promise<BenchWorkers> {
      if (processes === 1) {
        let handled = 0
        const pool = createWorkerPool({
          db: must().kysely,
          connectionString: url,
          handlers: [benchHandler((p) => {
            handled++
            onStart?.(p)
          })],
          concurrency,
          prefetch: options.prefetch,
        })
        await pool.start()
        return { handled: async () => handled, stop: () => pool.stop() }
      }
      return spawnWorkerChildren(
        { script: CHILD, args: [url, String(concurrency), String(options.prefetch ?? 0)], label: 'backroom' },
        processes,
      )
    },
    async completed() {
      const { rows } = await must().pool.query<{ n: number }>(`select count(*)::int as n from job_history where state = 'completed'`)
      return rows[0]?.n ?? 0
    },
    async anomalies() {
      const { rows } = await must().pool.query<{ n: number }>(
        `select (select count(*) from job_history where attempt <> 1 or state <> 'completed')
              + (select count(*) - count(distinct id) from job_history) as n`,
      )
      return Number(rows[0]?.n ?? 0)
    },
    async close() {
      await db?.close()
      db = null
    },
    /**
     * Inserts `n` completed jobs straight into job_history, shaped like the
     * bench's own (type bench.noop, 100 stores, attempt 1, payload `{ i }`), with
     * finished_at rising evenly over the last 7 days: history arrives in finish
     * order, and 7 days is inside the 14-day retention, so the retention service
     * deletes none of them. With no daily partition for those days they land in
     * job_history_default. Ids come from jobs' own identity sequence, advanced past
     * them, so they never collide with the ids of jobs enqueued later (anomalies()
     * counts duplicate ids).
     */
    async fillFinished(n) {
      if (n <= 0) return
      const pool = must().pool
      const { rows } = await pool.query<{ base: string }>(
        `select nextval(pg_get_serial_sequence('jobs', 'id'))::text as base`,
      )
      const base = rows[0]!.base
      await pool.query(`select setval(pg_get_serial_sequence('jobs', 'id'), $1::bigint + $2::bigint)`, [base, n])
      await fillInBatches(`${options.name ?? 'backroom'} job_history`, n, async (from, to) => {
        await pool.query(
          `insert into job_history (id, type, queue, store_id, user_id, priority, state, attempt, max_attempts,
                                    payload, dedupe_key, progress, errors, result, run_at, created_at, started_at, finished_at)
           select $1::bigint + g, 'bench.noop', 'default', 'store-' || (g % 100), null, 5, 'completed', 1, null,
                  jsonb_build_object('i', g), null, null, '[]'::jsonb, null, f - interval '2 s', f - interval '2 s', f - interval '1 s', f
           from (select g, now() - interval '7 days' + (g::float8 / $4) * interval '7 days' as f
                   from generate_series($2::bigint, $3::bigint) g) s`,
          [base, from, to, n],
        )
      })
    },
    /**
     * EXPLAIN (ANALYZE, BUFFERS) of one real claim of up to 100 bench.noop jobs,
     * with the claim's own settings, rolled back (queue-core's explainClaim).
     */
    async explainFetch() {
      return explainClaim(must().kysely, { workerId: 'bench-explain', limit: EXPLAIN_BATCH, leaseMs: 30_000, types: ['bench.noop'] })
    },
  }
}
