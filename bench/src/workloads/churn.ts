// Churn under a held snapshot: a long transaction anywhere on the server (a
// report, a backup, a stuck session) keeps every row version deleted after its
// snapshot. A queue deletes or updates every job it finishes, so its hot table
// and indexes fill with dead versions that neither VACUUM nor index hint bits can
// remove while the snapshot lives. How much slower do fetch and drain get?
import pg from 'pg'
import { progress } from '../progress.ts'
import type { BenchSystem } from '../systems/system.ts'
import {
  databaseUrl,
  enqueueChunked,
  medianExplain,
  tableStats,
  timedDrain,
  vacuumAnalyze,
  withClient,
  type TableStats,
  type VacuumLine,
} from './measure.ts'

/** Options of {@link churn}. */
export interface ChurnOptions {
  /** Jobs drained while the snapshot is held (each leaves dead row versions behind). */
  readonly jobs: number
  readonly concurrency: number
  /** Jobs per measuring drain, before and after the churn (default 10 % of `jobs`, at least 100). */
  readonly sample?: number
  /** Worker processes (default 1). */
  readonly processes?: number
  /** The system's database, when the adapter does not expose `url`. */
  readonly url?: string
}

/** What {@link churn} measured. */
export interface ChurnResult {
  /** Median fetch EXPLAIN ANALYZE on the fresh table, ms. */
  readonly freshClaimMs: number
  /** The fresh median run's row-picking step (its first Limit node), ms. */
  readonly freshPickMs: number | null
  readonly freshJobsPerSec: number
  /** Median fetch EXPLAIN ANALYZE after the churn, snapshot still held, ms. */
  readonly churnedClaimMs: number
  /** The churned median run's row-picking step (its first Limit node), ms. */
  readonly churnedPickMs: number | null
  readonly churnedJobsPerSec: number
  /** Drain rate of the `jobs` churned jobs themselves (dead versions piling up as it runs). */
  readonly duringChurnJobsPerSec: number
  readonly freshPlan: string
  readonly churnedPlan: string
  /** VACUUM VERBOSE after the churn, snapshot held: what it could not remove. */
  readonly vacuum: ReadonlyArray<VacuumLine>
  /** pg_stat_user_tables after the churned drain, snapshot still held. */
  readonly tables: ReadonlyArray<TableStats>
  /** Age in transactions of the held snapshot's xmin when the churned fetch was measured. */
  readonly snapshotXminAge: number
  /** Sum of anomalies() checks (must be 0). */
  readonly anomalies: number
}

/**
 * Fresh: enqueue `sample` jobs, VACUUM ANALYZE, fetch EXPLAIN (median of 5),
 * drain them. Then a separate connection opens a REPEATABLE READ transaction and
 * takes its snapshot (`select 1`), and `jobs` jobs are enqueued and drained
 * under it. Churned: enqueue `sample` again, VACUUM ANALYZE (it cannot remove
 * what the snapshot sees; its report is returned), fetch EXPLAIN and drain, with
 * the snapshot still held. The snapshot is released at the end, whatever happens.
 */
export async function churn(system: BenchSystem, opts: ChurnOptions): Promise<ChurnResult> {
  const url = databaseUrl(system, opts.url)
  const sample = opts.sample ?? Math.max(100, Math.round(opts.jobs * 0.1))
  const drainOpts = { concurrency: opts.concurrency, processes: opts.processes }
  let anomalies = 0

  await enqueueChunked(system, sample)
  await vacuumAnalyze(url)
  const fresh = await medianExplain(system)
  const freshDrain = await timedDrain(system, { ...drainOpts, n: sample, label: `fresh drain ${sample}` })
  anomalies += freshDrain.anomalies ?? 0

  const holder = new pg.Client({ connectionString: url, application_name: 'bench-snapshot-holder' })
  await holder.connect()
  try {
    // The server default is 0, but a holder killed by a timeout would silently void the test.
    await holder.query('set idle_in_transaction_session_timeout = 0')
    await holder.query('begin isolation level repeatable read')
    await holder.query('select 1')
    const { rows } = await holder.query<{ pid: number }>('select pg_backend_pid() as pid')
    const holderPid = rows[0]!.pid

    progress(`${system.name}: churn ${opts.jobs} jobs under a held snapshot`)
    await enqueueChunked(system, opts.jobs, sample)
    const during = await timedDrain(system, { ...drainOpts, n: opts.jobs, label: `churn drain ${opts.jobs}` })
    anomalies += during.anomalies ?? 0

    await enqueueChunked(system, sample, sample + opts.jobs)
    const vacuum = await vacuumAnalyze(url)
    const churned = await medianExplain(system)
    const snapshotXminAge = await holderXminAge(url, holderPid)
    const churnedDrain = await timedDrain(system, { ...drainOpts, n: sample, label: `churned drain ${sample}` })
    anomalies += churnedDrain.anomalies ?? 0
    const tables = await tableStats(url)
    return {
      freshClaimMs: fresh.claimMs,
      freshPickMs: fresh.pickMs,
      freshJobsPerSec: freshDrain.jobsPerSec,
      churnedClaimMs: churned.claimMs,
      churnedPickMs: churned.pickMs,
      churnedJobsPerSec: churnedDrain.jobsPerSec,
      duringChurnJobsPerSec: during.jobsPerSec,
      freshPlan: fresh.plan,
      churnedPlan: churned.plan,
      vacuum,
      tables,
      snapshotXminAge,
      anomalies,
    }
  } finally {
    await holder.query('rollback').catch(() => {})
    await holder.end()
  }
}

/** How many transactions old the holder's snapshot is: proof it is still pinning the horizon. */
async function holderXminAge(url: string, pid: number): Promise<number> {
  const { rows } = await withClient(url, (c) =>
    c.query<{ age: number | null }>('select age(backend_xmin) as age from pg_stat_activity where pid = $1', [pid]),
  )
  const age = rows[0]?.age
  if (age === null || age === undefined) throw new Error('the snapshot holder has no xmin: the snapshot was lost')
  return age
}
