import { setTimeout as sleep } from 'node:timers/promises'
import { progress } from '../progress.ts'
import type { BenchSystem } from '../systems/system.ts'

/** Pick-up latency percentiles in milliseconds, over the jobs that started. */
export interface LatencyResult {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
  /** Jobs whose handler had not started by the deadline; not in the percentiles. */
  readonly missed: number
}

/** Wall time in ms with sub-millisecond resolution; both ends of a sample are taken in this process. */
const wallMs = () => performance.timeOrigin + performance.now()

/** Nearest-rank percentile of an ascending array; NaN when it is empty. */
function percentile(sorted: ReadonlyArray<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

/**
 * Pick-up latency of an idle worker: the time from just before `enqueueOne`
 * until the handler starts, per job.
 *
 * Starts one in-process worker (concurrency 10), lets it go idle for 1 s, then
 * enqueues `count` jobs one at a time on a fixed schedule `gapMs` apart (a slow
 * enqueue delays only the next send, never shifts the whole schedule), each with
 * `payload: { sentAt, seq }`. The enqueue round trip is inside the measured time on
 * purpose: a job cannot be picked up before the enqueue commits. Jobs that have not
 * started `timeoutMs` (default 5 s) after the last enqueue count as `missed`.
 * With `gapMs` well above the pick-up time, every job finds the worker idle, so
 * this measures the wake-up path (LISTEN/NOTIFY or polling), not throughput.
 */
export async function pickupLatency(
  system: BenchSystem,
  opts: { count: number; gapMs: number; timeoutMs?: number },
): Promise<LatencyResult> {
  // Keyed by seq so a job started twice (a redelivery) is counted once, at its first start.
  const latencies = new Map<number, number>()
  let allStarted: (() => void) | null = null
  // Set at the deadline: a job that starts while the workers stop is late, i.e. missed.
  let closed = false
  const workers = await system.startWorkers({
    concurrency: 10,
    processes: 1,
    onStart(payload) {
      const now = wallMs()
      const seq = payload.seq
      const sentAt = payload.sentAt
      if (closed || typeof seq !== 'number' || typeof sentAt !== 'number' || latencies.has(seq)) return
      latencies.set(seq, now - sentAt)
      if (latencies.size === opts.count) allStarted?.()
    },
  })
  try {
    // Idle first: the first jobs must meet a worker waiting for work, not one finishing its start-up.
    await sleep(1_000)
    const t0 = performance.now()
    for (let seq = 0; seq < opts.count; seq++) {
      const due = t0 + seq * opts.gapMs - performance.now()
      if (due > 0) await sleep(due)
      if (seq % 10 === 0) progress(`${system.name}: pick-up latency ${seq}/${opts.count}`)
      await system.enqueueOne({ storeId: `store-${seq % 100}`, payload: { sentAt: wallMs(), seq } })
    }
    if (latencies.size < opts.count) {
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        allStarted = resolve
        timer = setTimeout(resolve, opts.timeoutMs ?? 5_000)
      })
      clearTimeout(timer)
    }
  } finally {
    closed = true
    await workers.stop()
  }
  const sorted = [...latencies.values()].sort((a, b) => a - b)
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
    missed: opts.count - latencies.size,
  }
}
