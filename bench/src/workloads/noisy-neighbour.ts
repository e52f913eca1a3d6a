import { setTimeout as sleep } from 'node:timers/promises'
import type { BenchJob, BenchSystem } from '../systems/system.ts'
import { progress } from '../progress.ts'

/** Sizes of one noisy-neighbour run. */
export interface NoisyNeighbourOptions {
  /** Jobs the one big store (`big`) enqueues first, in bulk. */
  readonly bigJobs: number
  /** Small stores enqueueing after it, one bulk each. */
  readonly smallStores: number
  readonly perSmallStore: number
  /** Slots of the one worker process. */
  readonly concurrency: number
  /** Give up waiting for the drain after this long (default 10 minutes). */
  readonly timeoutMs?: number
  /** Runs after the big store's enqueue, before the workers start (e.g. ANALYZE); untimed for the small stores. */
  readonly beforeWorkers?: () => Promise<void>
}

/** What one noisy-neighbour run measured. */
export interface NoisyNeighbourResult {
  /** Wait (handler start − enqueue) of the small stores' jobs, median and 99th percentile. */
  readonly smallWaitP50Ms: number
  readonly smallWaitP99Ms: number
  /** The big store's jobs, median wait. */
  readonly bigWaitP50Ms: number
  /** From workers started to every job completed. */
  readonly totalMs: number
  readonly jobsPerSec: number
  /** Correctness: jobs enqueued, handler calls, completed rows, system anomalies. */
  readonly jobs: number
  readonly handled: number
  readonly completed: number
  readonly anomalies: number
  /** Jobs whose handler ran more than once, and jobs whose handler never ran (both must be 0). */
  readonly duplicates: number
  readonly missing: number
}

/** Wall-clock milliseconds, comparable across the enqueue and the handler. */
const now = () => performance.timeOrigin + performance.now()

/** Nearest-rank percentile of ascending `sorted`; NaN when empty. */
export function percentile(sorted: ReadonlyArray<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

/**
 * One store (`big`) enqueues `bigJobs` jobs in bulk; then (after
 * `beforeWorkers`, e.g. ANALYZE) one worker process of `concurrency` slots
 * starts on that backlog, and while it works `smallStores` stores enqueue
 * `perSmallStore` jobs each (one bulk per store, back to back). Every payload
 * carries `{ store, sentAt, seq }`, sentAt taken just before its store's
 * enqueue; each handler call records its wait (start − sentAt). So a small
 * store's wait is how long its work sat behind the big store's backlog (in
 * FIFO order: the rest of it). Returns the small stores' wait percentiles,
 * the time to drain everything, and the checks that every job ran exactly once.
 *
 * The store is read back from `payload.store`: a system may enqueue under
 * another store id (`backroom-fifo` puts every job under one) but keeps the
 * payload's store as sent.
 */
export async function noisyNeighbour(system: BenchSystem, opts: NoisyNeighbourOptions): Promise<NoisyNeighbourResult> {
  const total = opts.bigJobs + opts.smallStores * opts.perSmallStore
  let seq = 0
  const job = (store: string, sentAt: number): BenchJob => ({ storeId: store, payload: { store, sentAt, seq: seq++ } })

  progress(`${system.name}: noisy enqueue big ${opts.bigJobs}`)
  const bigSentAt = now()
  await system.enqueueBulk(Array.from({ length: opts.bigJobs }, () => job('big', bigSentAt)))
  if (opts.beforeWorkers) {
    progress(`${system.name}: noisy before workers`)
    await opts.beforeWorkers()
  }

  const runs = new Uint32Array(total)
  const smallWaits: number[] = []
  const bigWaits: number[] = []
  let strays = 0
  const onStart = (payload: Record<string, unknown>) => {
    const startedAt = now()
    const i = payload.seq
    if (typeof i !== 'number' || i < 0 || i >= total) {
      strays++
      return
    }
    if (runs[i]!++ > 0) return
    const wait = startedAt - Number(payload.sentAt)
    if (String(payload.store) === 'big') bigWaits.push(wait)
    else smallWaits.push(wait)
  }
  const workers = await system.startWorkers({ concurrency: opts.concurrency, processes: 1, onStart })
  const t0 = performance.now()
  for (let s = 0; s < opts.smallStores; s++) {
    if (s % 20 === 0) progress(`${system.name}: noisy enqueue small stores ${s}/${opts.smallStores} while the big backlog drains`)
    const store = `small-${s}`
    const sentAt = now()
    await system.enqueueBulk(Array.from({ length: opts.perSmallStore }, () => job(store, sentAt)))
  }
  const deadline = t0 + (opts.timeoutMs ?? 600_000)
  let done = 0
  while (done < total && performance.now() < deadline) {
    await sleep(50)
    done = await system.completed()
    progress(`${system.name}: noisy drain c=${opts.concurrency} ${done}/${total}`)
  }
  const totalMs = performance.now() - t0
  await workers.stop()
  const handled = await workers.handled()
  const completed = await system.completed()
  const anomalies = await system.anomalies()
  let duplicates = strays
  let missing = 0
  for (const n of runs) {
    if (n === 0) missing++
    else if (n > 1) duplicates++
  }
  smallWaits.sort((a, b) => a - b)
  bigWaits.sort((a, b) => a - b)
  return {
    smallWaitP50Ms: percentile(smallWaits, 0.5),
    smallWaitP99Ms: percentile(smallWaits, 0.99),
    bigWaitP50Ms: percentile(bigWaits, 0.5),
    totalMs,
    jobsPerSec: completed / (totalMs / 1000),
    jobs: total,
    handled,
    completed,
    anomalies,
    duplicates,
    missing,
  }
}
