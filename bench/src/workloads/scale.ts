// Scale workloads: does the fetch stay cheap as finished history piles up
// (scaleHistory), and does the drain rate hold as the backlog grows (scalePending)?
import { progress } from '../progress.ts'
import type { BenchSystem } from '../systems/system.ts'
import { analyze, checkpoint, databaseUrl, enqueueChunked, medianExplain, scaleHooks, tableStats, timedDrain, type TableStats } from './measure.ts'

/** Options of {@link scaleHistory}. */
export interface ScaleHistoryOptions {
  /** Finished jobs put into the system's own history/archive first (e.g. 10_000_000). */
  readonly finished: number
  /** Jobs enqueued on top of that history. */
  readonly pending: number
  /** Jobs drained (timed) out of `pending`; at most `pending`. */
  readonly drainJobs: number
  /** Worker slots per process. */
  readonly concurrency: number
  /** Worker processes (default 1). */
  readonly processes?: number
  /** The system's database, when the adapter does not expose `url`. */
  readonly url?: string
  /** EXPLAIN runs the median is taken over (default 5). */
  readonly explainRuns?: number
  /** Check anomalies() after the drain (default true; untimed, but a full scan of the history). */
  readonly verify?: boolean
}

/** What {@link scaleHistory} measured. */
export interface ScaleHistoryResult {
  /** Median EXPLAIN ANALYZE execution time of one fetch of up to 100 jobs, ms. */
  readonly claimMs: number
  /** The median run's row-picking step (its first Limit node), ms. */
  readonly pickMs: number | null
  /** The median run's plan. */
  readonly plan: string
  readonly claimSamplesMs: ReadonlyArray<number>
  readonly drainJobsPerSec: number
  readonly drained: number
  /** anomalies() after the drain (must be 0), null when not checked. */
  readonly anomalies: number | null
  /** Largest tables after the fill, for the report (sizes show where the history went). */
  readonly tables: ReadonlyArray<TableStats>
}

/**
 * Fills `finished` jobs into the system's history (fillFinished), enqueues
 * `pending`, ANALYZEs and CHECKPOINTs (see checkpoint()), measures the fetch
 * (median of 5 EXPLAIN ANALYZE, rolled back) and then times draining
 * `drainJobs` of the pending jobs. Call it on a freshly set-up system;
 * graphile-worker keeps no history, so its fill adds nothing.
 */
export async function scaleHistory(system: BenchSystem, opts: ScaleHistoryOptions): Promise<ScaleHistoryResult> {
  const url = databaseUrl(system, opts.url)
  const { fillFinished } = scaleHooks(system)
  if (opts.drainJobs > opts.pending) throw new Error(`drainJobs (${opts.drainJobs}) > pending (${opts.pending})`)
  progress(`${system.name}: fill ${opts.finished.toLocaleString('en-US')} finished jobs`)
  await fillFinished(opts.finished)
  await enqueueChunked(system, opts.pending)
  progress(`${system.name}: analyze, checkpoint`)
  await analyze(url)
  await checkpoint(url)
  const tables = await tableStats(url)
  const claim = await medianExplain(system, opts.explainRuns ?? 5)
  const drain = await timedDrain(system, {
    n: opts.drainJobs,
    concurrency: opts.concurrency,
    processes: opts.processes,
    verify: opts.verify,
    label: `drain ${opts.drainJobs} over ${opts.finished} finished`,
  })
  return {
    claimMs: claim.claimMs,
    pickMs: claim.pickMs,
    plan: claim.plan,
    claimSamplesMs: claim.samplesMs,
    drainJobsPerSec: drain.jobsPerSec,
    drained: drain.completed,
    anomalies: drain.anomalies,
    tables,
  }
}

/** Options of {@link scalePending}. */
export interface ScalePendingOptions {
  /** Backlog enqueued before the workers start (1k, 10k, 100k, 1M for the growth curve). */
  readonly pending: number
  readonly concurrency: number
  /** Jobs timed out of the backlog (default all of it). */
  readonly drainJobs?: number
  /** Worker processes (default 1). */
  readonly processes?: number
  /** The system's database, when the adapter does not expose `url`. */
  readonly url?: string
  /** Check anomalies() after the drain (default true). */
  readonly verify?: boolean
}

/** What {@link scalePending} measured. */
export interface ScalePendingResult {
  readonly pending: number
  readonly drainJobsPerSec: number
  readonly drained: number
  /** Median EXPLAIN ANALYZE of one fetch of up to 100 with the full backlog, ms (null: no explainFetch). */
  readonly claimMs: number | null
  readonly pickMs: number | null
  readonly plan: string | null
  readonly anomalies: number | null
}

/**
 * Enqueues `pending` jobs, ANALYZEs, measures the fetch at that depth, then times
 * draining `drainJobs` (default: the whole backlog). Run it on a fresh system per
 * size; the ratio of jobs/s at 1M to 1k is the cost of a deep backlog.
 */
export async function scalePending(system: BenchSystem, opts: ScalePendingOptions): Promise<ScalePendingResult> {
  const url = databaseUrl(system, opts.url)
  const n = Math.min(opts.drainJobs ?? opts.pending, opts.pending)
  await enqueueChunked(system, opts.pending)
  progress(`${system.name}: analyze`)
  await analyze(url)
  const claim = system.explainFetch ? await medianExplain(system) : null
  const drain = await timedDrain(system, {
    n,
    concurrency: opts.concurrency,
    processes: opts.processes,
    verify: opts.verify,
    label: `drain ${n} of ${opts.pending} pending`,
  })
  return {
    pending: opts.pending,
    drainJobsPerSec: drain.jobsPerSec,
    drained: drain.completed,
    claimMs: claim?.claimMs ?? null,
    pickMs: claim?.pickMs ?? null,
    plan: claim?.plan ?? null,
    anomalies: drain.anomalies,
  }
}
