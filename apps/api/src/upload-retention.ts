import type { Db } from '@backroom/queue-core'
import { deleteExpiredFeedUploads, type ExpiredUploadsCursor, type shopView } from '@backroom/handlers/uploads'
import type { FastifyBaseLogger } from 'fastify'
import { createPeriodicTask, type PeriodicTask } from './periodic-task.ts'

/** How often each API process sweeps every store's expired uploads when the caller does not say. */
export const DEFAULT_UPLOAD_SWEEP_INTERVAL_MS = 10 * 60_000
/** Batches (of 100 uploads) one sweep looks at at most, so a run stays short; the next run goes on. */
const MAX_BATCHES_PER_RUN = 20

/** Options of {@link createUploadRetention}. */
export interface UploadRetentionOptions {
  readonly db: Db
  /** The shop's tables on the same pool (shopView(db)). */
  readonly shop: ReturnType<typeof shopView>
  /** Uploads older than this are deleted unless a live import job names them. */
  readonly retentionMs: number
  /** Period of the background sweep; null: no background sweep (per-store deletion only). */
  readonly intervalMs: number | null
  readonly log: FastifyBaseLogger
  /** Injected clock (ms). */
  readonly now?: () => number
}

/** Deletes expired feed uploads: one store's on demand, every store's on a timer. */
export interface UploadRetention {
  /** Deletes `storeId`'s expired uploads (every store's when absent); returns how many went. */
  runOnce(storeId?: string): Promise<number>
  /** Starts the background sweep (first run after min(interval, 1 min)). */
  start(): void
  /** Stops the sweep and waits for a run in progress. */
  stop(): Promise<void>
}

/**
 * Upload retention, run by the API (the process that creates uploads, so
 * retention works without a worker, and a store's quota is freed exactly
 * when that store uploads again): the upload route deletes the store's
 * expired uploads before checking its quota, and a timer in each API
 * process sweeps every store's (stores that never upload again). Several
 * processes sweeping at once is harmless: deletes are by id and idempotent.
 * An upload a live `import.products` job names is kept past its retention
 * until the job finishes.
 *
 * @example
 * const retention = createUploadRetention({ db, shop: shopView(db), retentionMs: 72 * 3_600_000, intervalMs: 600_000, log })
 * retention.start()
 */
export function createUploadRetention(options: UploadRetentionOptions): UploadRetention {
  const log = options.log.child({ component: 'upload-retention' })
  const now = options.now ?? Date.now

  async function runOnce(storeId?: string): Promise<number> {
    const before = new Date(now() - options.retentionMs)
    let deleted = 0
    let kept = 0
    let after: ExpiredUploadsCursor | undefined
    for (let batch = 0; batch < MAX_BATCHES_PER_RUN; batch++) {
      const result = await deleteExpiredFeedUploads(options.shop, { queue: options.db.kysely, before, storeId, after })
      deleted += result.deleted
      kept += result.kept
      if (result.next === null) break
      after = result.next
    }
    if (deleted > 0) log.info({ deleted, kept, ...(storeId === undefined ? {} : { storeId }) }, 'expired uploads deleted')
    return deleted
  }

  const sweep: PeriodicTask | null =
    options.intervalMs === null
      ? null
      : createPeriodicTask({
          intervalMs: options.intervalMs,
          firstDelayMs: Math.min(options.intervalMs, 60_000),
          run: () => runOnce(),
          log,
          failureMessage: 'upload sweep failed',
        })

  return {
    runOnce,
    start: () => sweep?.start(),
    stop: async () => sweep?.stop(),
  }
}
