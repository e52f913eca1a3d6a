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

/**
 * Creates a completer. A flush starts when `batch` items wait or `delayMs`
 * after the first; while one flush runs, the next batch gathers, so under
 * load each statement carries many jobs and a job costs a fraction of a
 * transaction.
 */
export function createCompleter(args: { db: Executor; batch: number; delayMs: number; log: Logger }): Completer {
  let queue: Array<{ item: FinishItem; resolve(ok: boolean): void; reject(err: unknown): void }> = []
  let flushing: Promise<void> | null = null
  let timer: NodeJS.Timeout | null = null
  let inFlight = 0

  const schedule = () => {
    if (flushing || queue.length === 0) return
    if (queue.length >= args.batch) {
      flushing = flush()
      return
    }
    timer ??= setTimeout(() => {
      timer = null
      if (!flushing) flushing = flush()
    }, args.delayMs)
  }

  const flush = async (): Promise<void> => {
    if (timer) {
      clearTimeout(timer)
      timer = null
    }
    const batch = queue.slice(0, args.batch)
    queue = queue.slice(batch.length)
    inFlight = batch.length
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
      inFlight = 0
      flushing = null
      schedule()
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
      while (queue.length > 0 || flushing) {
        if (!flushing) flushing = flush()
        await flushing
      }
    },
  }
}
