import { firstOk, measure, medians, n, runsNote, short, suite } from '../harness.ts'
import { withScaleHooks } from '../systems/registry.ts'
import { check } from '../targets.ts'
import { churn } from '../workloads/churn.ts'

const CHURN_WHY =
  'Every claimed job leaves a dead entry at the front of jobs_claim_idx (the lowest keys are claimed first). While a snapshot is ' +
  'held, neither vacuum nor the index scan can discard those entries, so each claim steps over all of them and visits their heap ' +
  'rows. No key can skip them: a later job may take a virtual time below the ones already claimed (a rescued or retried job keeps ' +
  'its own). graphile-worker\'s claim slows the same way on this workload (see its row).'

/** Workload 7: a drain while another connection holds a snapshot (vacuum held back). */
export const churnSuite = suite({
  key: 'churn',
  sizes: { quick: { jobs: 2_000, concurrency: 10 }, full: { jobs: 100_000, concurrency: 10 }, issue: { jobs: 1_000_000, concurrency: 10 } },
  async run(ctx, size) {
    const systems = withScaleHooks(ctx.systems)
    const results = await measure(ctx, `churn ${short(size.jobs)}`, systems, async (s, db) => {
      const r = await churn(s, { jobs: size.jobs, concurrency: size.concurrency, url: db.url })
      ctx.check(r.anomalies === 0, `${s.name} churn: ${r.anomalies} anomalies (jobs run more than once or not completed)`)
      return r
    })
    const columns = {
      'fresh claim (ms)': (r: { freshClaimMs: number }) => r.freshClaimMs,
      'churned claim (ms)': (r: { churnedClaimMs: number }) => r.churnedClaimMs,
      'fresh (jobs/s)': (r: { freshJobsPerSec: number }) => r.freshJobsPerSec,
      'during churn (jobs/s)': (r: { duringChurnJobsPerSec: number }) => r.duringChurnJobsPerSec,
      'churned (jobs/s)': (r: { churnedJobsPerSec: number }) => r.churnedJobsPerSec,
      'churned ÷ fresh': (r: { churnedJobsPerSec: number; freshJobsPerSec: number }) => r.churnedJobsPerSec / r.freshJobsPerSec,
    }
    const appendix = firstOk(results).flatMap(([system, r]) => [
      { summary: `${system}: fetch plan, fresh`, text: r.freshPlan },
      { summary: `${system}: fetch plan after the churn, snapshot held`, text: r.churnedPlan },
    ])
    const rows = medians(results, columns)
    const cell = (column: string) => {
      const v = rows.find((r) => r.system === 'backroom')?.values[column]
      return typeof v === 'number' ? v : Number.NaN
    }
    const targets = [
      ...check({ name: 'Churn: claim time, churned over fresh', op: '≤', threshold: 2, unit: '×', why: CHURN_WHY }, cell('churned claim (ms)') / cell('fresh claim (ms)'), 'EXPLAIN ANALYZE, median of 5 each'),
      ...check({ name: 'Churn: drain rate, fresh over churned', op: '≤', threshold: 2, unit: '×' }, cell('fresh (jobs/s)') / cell('churned (jobs/s)'), ''),
    ]
    return [
      {
        workload: 'churn',
        title: `Churn: ${n(size.jobs)} jobs drained under a held snapshot (${size.concurrency} slots)`,
        columns: Object.keys(columns),
        rows,
        targets,
        compare: { 'churned claim (ms)': 'lower', 'during churn (jobs/s)': 'higher', 'churned (jobs/s)': 'higher', 'churned ÷ fresh': 'higher' },
        appendix,
        notes: [
          runsNote(ctx),
          'A REPEATABLE READ transaction on another connection holds its snapshot while the jobs are enqueued and drained, so no dead row version ' +
            'can be vacuumed. fresh/churned: a sample drain (10% of the jobs) and the median of 5 fetch EXPLAIN ANALYZE before the churn and after it, snapshot still held.',
        ],
      },
    ]
  },
})
