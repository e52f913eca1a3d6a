import { ANALYZE_NOTE, analyzeDb, measure, medians, n, rowsBySystem, runsNote, suite } from '../harness.ts'
import { check, worstRatio } from '../targets.ts'
import { drain } from '../workloads/drain.ts'

const DRAIN_CONFIGS = [
  { concurrency: 10, processes: 1 },
  { concurrency: 50, processes: 1 },
  { concurrency: 10, processes: 4 },
  { concurrency: 50, processes: 4 },
] as const

/** What limits Backroom's drain against graphile-worker, as profiled (see the closing notes in the repository history). */
const DRAIN_WHY =
  'CPU: the database and every worker share 2 cores, and Backroom does more per job than graphile-worker. A claim changes `state`, ' +
  'which partial indexes name, so it is never a HOT update (new entries in the primary key and the running-set index); completion ' +
  'moves the row into a partitioned history table with three indexes instead of deleting it; fair ordering keeps virtual times. ' +
  'The claim-and-complete SQL alone, with no worker code, tops out near 50,000-57,000 jobs/s over 4 connections here; the worker ' +
  'adds about 15-20 µs of Node.js CPU per job (pg row parsing, promises, timers, garbage collection).'

/** Workload 2: draining 100,000 no-op jobs at two concurrencies, one and four processes. */
export const drainSuite = suite({
  key: 'drain',
  sizes: { quick: { jobs: 1_000, timeoutMs: 120_000 }, full: { jobs: 100_000, timeoutMs: 900_000 } },
  async run(ctx, size) {
    const columns: string[] = []
    const rows = rowsBySystem(ctx.systems)
    for (const { concurrency, processes } of DRAIN_CONFIGS) {
      const label = `drain c=${concurrency} p=${processes}`
      const column = `c=${concurrency} p=${processes} (jobs/s)`
      columns.push(column)
      const results = await measure(ctx, label, ctx.systems, async (s, db) => {
        const r = await drain(s, { n: size.jobs, concurrency, processes, timeoutMs: size.timeoutMs, beforeWorkers: analyzeDb(db) })
        ctx.check(
          r.completed === size.jobs && r.handled === size.jobs && r.anomalies === 0,
          `${s.name} ${label}: expected ${size.jobs} jobs completed and handled once each, got completed=${r.completed} handled=${r.handled} anomalies=${r.anomalies}`,
        )
        return r
      })
      rows.add(medians(results, { [column]: (r) => r.jobsPerSec }))
    }
    const list = rows.list()
    const vsGraphile = worstRatio(list, columns, 'graphile')
    const vsPgBoss = worstRatio(list, columns, 'pgboss')
    return [
      {
        workload: 'drain',
        title: `Drain: ${n(size.jobs)} no-op jobs, c slots per process × p worker processes`,
        columns,
        rows: list,
        compare: Object.fromEntries(columns.map((c) => [c, 'higher' as const])),
        targets: [
          ...check({ name: 'Drain vs graphile-worker, every configuration', op: '≥', threshold: 1.2, unit: '×', why: DRAIN_WHY }, vsGraphile.value, vsGraphile.detail),
          ...check({ name: 'Drain vs pg-boss, every configuration', op: '≥', threshold: 5, unit: '×', why: DRAIN_WHY }, vsPgBoss.value, vsPgBoss.detail),
        ],
        notes: [
          runsNote(ctx),
          'The jobs are enqueued first (untimed); the clock runs from the workers started to the last completion committed.',
          ANALYZE_NOTE,
          'Each run checks that every job completed and its handler ran exactly once.',
        ],
      },
    ]
  },
})
