import { setTimeout as sleep } from 'node:timers/promises'
import type { BenchSystem } from '../systems/system.ts'
import { makeJobs } from './enqueue.ts'
import { progress } from '../progress.ts'

/** What one drain run measured. */
export interface DrainResult {
  readonly jobsPerSec: number
  /** Handler calls seen; must equal the jobs. */
  readonly handled: number
  readonly completed: number
  /** Completed rows with attempt > 1 or duplicated ids; must be 0. */
  readonly anomalies: number
}

/**
 * Enqueues `n` no-op jobs (untimed), starts the workers and times until all
 * are completed; then checks every job ran exactly once.
 */
export async function drain(
  system: BenchSystem,
  opts: {
    n: number
    concurrency: number
    processes: number
    timeoutMs?: number
    /** Runs after the enqueue, before the workers start (untimed), e.g. ANALYZE. */
    beforeWorkers?: () => Promise<void>
  },
): Promise<DrainResult> {
  progress(`${system.name}: enqueue ${opts.n} for drain`)
  await system.enqueueBulk(makeJobs(opts.n, 100))
  if (opts.beforeWorkers) {
    progress(`${system.name}: before workers`)
    await opts.beforeWorkers()
  }
  const workers = await system.startWorkers({ concurrency: opts.concurrency, processes: opts.processes })
  const t0 = performance.now()
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000)
  let done = 0
  while (done < opts.n && Date.now() < deadline) {
    await sleep(50)
    done = await system.completed()
    progress(`${system.name}: drain c=${opts.concurrency} p=${opts.processes} ${done}/${opts.n}`)
  }
  const seconds = (performance.now() - t0) / 1000
  await workers.stop()
  const handled = await workers.handled()
  const completed = await system.completed()
  const anomalies = await system.anomalies()
  return { jobsPerSec: completed / seconds, handled, completed, anomalies }
}
