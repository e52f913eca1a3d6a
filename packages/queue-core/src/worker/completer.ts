import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Executor } from '../db/database.ts'
import { finishMany, type FinishItem } from '../db/history.ts'
import { isDataError, isTransientError, outcomeRetryDelayMs, writeErrorFields } from './retry-outcome-write.ts'

/** Options of {@link Completer.push}. */
export interface PushOptions {
  /**
   * Until when (a `performance.now()` time) the item's lease may still hold:
   * a failed write is tried again up to then. Read before each pause, so a
   * lease extended meanwhile counts.
   */
  writableUntil(): number
}

/** Batches final outcomes (completed, failed, cancelled) into one fenced statement per flush. */
export interface Completer {
  /**
   * Queues an outcome; resolves with true once written, false if the lease
   * was lost; rejects with the last error when the write could not be made
   * while the lease held.
   */
  push(item: FinishItem, options: PushOptions): Promise<boolean>
  /** Outcomes queued or being written. */
  readonly pending: number
  /** Writes everything queued and waits for it. */
  drain(): Promise<void>
}

/** Flushes in flight at once: two let one statement's commit wait overlap the next one's work. */
const PARALLEL_FLUSHES = 2

interface Entry {
  readonly item: FinishItem
  readonly options: PushOptions
  /** Set once the item's text was dropped after a data error: a second one is not retried. */
  readonly bare?: boolean
  resolve(ok: boolean): void
  reject(err: unknown): void
}

/** The entry without its result and with a placeholder error: what is left to store after a data error. */
function withoutText(entry: Entry): Entry {
  const { item } = entry
  const error = item.error === null ? null : { attempt: item.error.attempt, at: item.error.at, code: 'unstorable_outcome', message: 'the error could not be stored' }
  return { ...entry, item: { ...item, result: null, error }, bare: true }
}

/**
 * Creates a completer. A flush starts when `batch` items wait or `delayMs`
 * after the first; while flushes run, the next batch gathers, so under load
 * each statement carries many jobs and a job costs a fraction of a
 * transaction. Up to two flushes run at once, on different connections: a
 * flush spends much of its time waiting for its commit to reach the disk,
 * and a single flush in flight left both cores idle for that time (measured
 * on the drain benchmark).
 *
 * One job's outcome never costs another's:
 * - a flush that fails with a transient error (a short outage, a terminated
 *   connection) is tried again with backoff, each item for as long as its
 *   lease may hold (items past theirs are given up; the rest go on);
 * - a flush that fails with a data error (SQLSTATE class 22: a value the
 *   statement cannot take) is split in halves, down to single items, so only
 *   the offending item is left; it is then written without its result and
 *   with a placeholder error, so the job still ends in the state its run earned.
 */
export function createCompleter(args: { db: Executor; batch: number; delayMs: number; log: Logger }): Completer {
  let queue: Entry[] = []
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

  const settle = (entries: ReadonlyArray<Entry>, matchedIds: ReadonlyArray<string>) => {
    const matched = new Set(matchedIds)
    for (const e of entries) {
      const ok = matched.has(e.item.fence.id)
      if (!ok) args.log.warn({ jobId: e.item.fence.id, attempt: e.item.fence.attempt }, 'lease lost before completion')
      e.resolve(ok)
    }
  }

  /** Writes `entries` in one statement, retrying and splitting as the class of error asks. */
  const write = async (entries: ReadonlyArray<Entry>): Promise<void> => {
    let live = entries
    for (let n = 1; live.length > 0; n++) {
      try {
        settle(live, await finishMany(args.db, live.map((e) => e.item)))
        return
      } catch (err) {
        if (isDataError(err)) return isolate(live, err)
        if (!isTransientError(err)) {
          for (const e of live) e.reject(err)
          return
        }
        const delayMs = outcomeRetryDelayMs(n)
        const resumeAt = performance.now() + delayMs
        const expired = new Set(live.filter((e) => e.options.writableUntil() <= resumeAt))
        for (const e of expired) e.reject(err)
        live = live.filter((e) => !expired.has(e))
        if (live.length === 0) return
        args.log.warn({ ...writeErrorFields(err), jobs: live.length, tries: n, delayMs }, 'outcome write failed; retrying')
        await sleep(delayMs)
      }
    }
  }

  /** After a data error: halves until the offending item stands alone, then that item without its text. */
  const isolate = async (entries: ReadonlyArray<Entry>, err: unknown): Promise<void> => {
    if (entries.length > 1) {
      const middle = Math.ceil(entries.length / 2)
      await write(entries.slice(0, middle))
      await write(entries.slice(middle))
      return
    }
    const only = entries[0] as Entry
    if (only.bare) {
      only.reject(err)
      return
    }
    const { fence } = only.item
    args.log.error({ jobId: fence.id, attempt: fence.attempt, errCode: writeErrorFields(err).errCode }, 'outcome not storable; recorded without its text')
    await write([withoutText(only)])
  }

  const flush = async (): Promise<void> => {
    const batch = queue.slice(0, args.batch)
    queue = queue.slice(batch.length)
    inFlight += batch.length
    try {
      await write(batch)
    } catch (err) {
      // write() settles every entry itself; this is only a guard against a bug leaving callers waiting.
      for (const e of batch) e.reject(err)
    } finally {
      inFlight -= batch.length
    }
  }

  return {
    push(item, options) {
      return new Promise<boolean>((resolve, reject) => {
        queue.push({ item, options, resolve, reject })
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
