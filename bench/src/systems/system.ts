/** One job as every system gets it. */
export interface BenchJob {
  readonly storeId: string
  readonly payload: Record<string, unknown>
}

/** Running workers of one system; `handled` counts handler calls in this process. */
export interface BenchWorkers {
  /** Handler calls so far, summed over every worker process. */
  handled(): Promise<number>
  stop(): Promise<void>
}

/** A queue under test, behind the same few verbs. */
export interface BenchSystem {
  readonly name: string
  /** Install the schema on an empty database. */
  setup(url: string): Promise<void>
  enqueueBulk(jobs: ReadonlyArray<BenchJob>): Promise<void>
  enqueueOne(job: BenchJob): Promise<void>
  /** Start `processes` worker processes (1 = in this process) of `concurrency` slots running a no-op. */
  startWorkers(opts: { concurrency: number; processes: number; onStart?: (payload: Record<string, unknown>) => void }): Promise<BenchWorkers>
  /** Jobs finished successfully so far. */
  completed(): Promise<number>
  /** Jobs finished more than once or with attempt > 1 (should be 0). */
  anomalies(): Promise<number>
  close(): Promise<void>
  /** The database this system was set up on (for workloads that measure it directly). */
  readonly url?: string
  /** Adds `n` finished jobs to the system's own history/archive, fast (plain SQL); for the scale workload. */
  fillFinished?(n: number): Promise<void>
  /** EXPLAIN (ANALYZE) of the system's own fetch/claim statement as it runs it, rolled back: time and plan text. */
  explainFetch?(): Promise<{ readonly ms: number; readonly plan: string }>
}
