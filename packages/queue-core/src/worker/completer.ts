import type { Logger } from 'pino'
import type { Executor } from '../db/database.ts'
import { finishMany, type FinishItem } from '../db/history.ts'

/** Batches final outcomes (completed, failed, cancelled) into one fenced statement per flush. */
export interface Completer {
  /** Queues an outcome; resolves with true once written, false if the lease was lost. */
  push(item: FinishItem): Promise<boolean>
  /** Outcomes queued or being written. */
  readonly pending: number
  /** Writes everything queued and waits for it. */
  drain(): Promise<void>
}

/** Flushes in flight at once: two let one statement's commit wait overlap the next one's work. */
const PARALLEL_FLUSHES = 2

/**
 * Creates a completer. A flush starts when `batch` items wait or `delayMs`
 * after the first; while flushes run, the next batch gathers, so under load
 * each statement carries many jobs and a job costs a fraction of a
 * transaction. Up to two flushes run at once, on different connections: a
 * flush spends much of its time waiting for its commit to reach the disk,
 * and a single flush in flight left both cores idle for that time (measured
 * on the drain benchmark).
 */
export function createCompleter(args: { db: Executor; batch: number; delayMs: number; log: Logger }): Completer {
  let queue: Array<{ item: FinishItem; resolve(ok: boolean): void; reject(err: unknown): void }> = []
  const flushing = new Set<Promise<void>>()
  let timer: NodeJS.Timeout | null = null
  let inFlight = 0

  const startFlush = () => {
    if (timer) {
      clearTimeout(timer)
      timer = null
    }
    const p = flush()
    flushing.add(p)
    void p.finally(() => {
      flushing.delete(p)
      schedule()
    })
  }

  const schedule = () => {
    if (queue.length === 0 || flushing.size >= PARALLEL_FLUSHES) return
    // A full batch goes at once; a partial one waits a moment for company,
    // unless no flush is running to gather it meanwhile.
    if (queue.length >= args.batch) {
      startFlush()
      return
    }
    if (flushing.size > 0) return
    timer ??= setTimeout(() => {
      timer = null
      if (flushing.size < PARALLEL_FLUSHES && queue.length > 0) startFlush()
    }, args.delayMs)
  }

  const flush = async (): Promise<void> => {
    const batch = queue.slice(0, args.batch)
    queue = queue.slice(batch.length)
    inFlight += batch.length
    try {
      const matched = new Set(await finishMany(args.db, batch.map((b) => b.item)))
      for (const b of batch) {
        const ok = matched.has(b.item.fence.id)
        if (!ok) args.log.warn({ jobId: b.item.fence.id, attempt: b.item.fence.attempt }, 'lease lost before completion')
        b.resolve(ok)
      }
    } catch (err) {
      for (const b of batch) b.reject(err)
    } finally {
      inFlight -= batch.length
    }
  }

  return {
    push(item) {
      return new Promise<boolean>((resolve, reject) => {
        queue.push({ item, resolve, reject })
        schedule()
      })
    },
    get pending() {
      return queue.length + inFlight
    },
    async drain() {
      while (queue.length > 0 || flushing.size > 0) {
        if (queue.length > 0 && flushing.size < PARALLEL_FLUSHES) startFlush()
        await Promise.race(flushing)
      }
    },
  }
}
