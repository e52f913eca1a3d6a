import {
  defineHandler,
  enqueueMany,
  getJob,
  JobNotFoundError,
  PermanentError,
  snooze,
  StoreCapacityError,
  type Handler,
  type HandlerContext,
  type JobTypeColumns,
} from '@backroom/queue-core'
import type { HandlerDeps } from '../lib/deps.ts'
import * as imports from './import-db.ts'
import { ImportProductsChunkPayload, ImportProductsPayload } from './import-products-payload.ts'
import { buildImportReport, settleCancelledImport } from './import-report.ts'
import type { ImportTables } from './import-tables.ts'
import { locateFeed, type FeedSource } from './feed/open-feed.ts'
import { DEFAULT_MAX_FEED_BYTES, readFeedRecords } from './feed/read-feed-records.ts'
import { stageFeed } from './stage-feed.ts'

export type { ImportReport } from './import-report.ts'

export const IMPORT_PRODUCTS = 'import.products'
export const IMPORT_PRODUCTS_CHUNK = 'import.products.chunk'

/** Tuning of an import; the defaults suit feeds of 100,000+ rows. */
export interface ImportOptions {
  /** Feed lines per chunk job. */
  readonly chunkLines: number
  /** Lines per staging transaction. */
  readonly batchRows: number
  /** Characters of row text per staging transaction. */
  readonly batchChars: number
  /** How long the parent snoozes between looks at its chunks. */
  readonly pollMs: number
  /** The whole feed download, headers to last byte. */
  readonly feedTimeoutMs: number
  /** The longest wait for the next bytes of the feed. */
  readonly feedIdleTimeoutMs: number
  /** Rejected lines kept in the job result (all are in shop.product_import_errors). */
  readonly errorSample: number
  /** Least time between two progress reports while staging. */
  readonly progressEveryMs: number
  /** The most bytes of feed read, after decompression (`feed_too_large` past it). */
  readonly maxFeedBytes: number
}

export const DEFAULT_IMPORT_OPTIONS: ImportOptions = {
  chunkLines: 5_000,
  batchRows: 500,
  batchChars: 4_000_000,
  pollMs: 2_000,
  feedTimeoutMs: 15 * 60_000,
  feedIdleTimeoutMs: 60_000,
  errorSample: 50,
  progressEveryMs: 1_000,
  maxFeedBytes: DEFAULT_MAX_FEED_BYTES,
}

/**
 * Operator settings for the import's job types (apply with configureJobType):
 * a store's big import takes at most 4 workers for its chunks, so it cannot
 * hold every slot while other stores wait.
 */
export const importTypeSettings = {
  [IMPORT_PRODUCTS]: { maxRunningPerStore: 2 },
  [IMPORT_PRODUCTS_CHUNK]: { maxRunningPerStore: 4 },
} as const satisfies Readonly<Record<string, JobTypeColumns>>

/** Pending chunks whose jobs one poll looks up at most. */
const SETTLE_LOOKUPS = 200

/**
 * `import.products`: imports a product feed (CSV or JSON Lines, from a URL
 * or an upload) into shop.products, upserting by SKU.
 *
 * The parent streams the feed once into staging tables (bad lines recorded
 * with line and reason, never fatal), then enqueues one
 * `import.products.chunk` job per range of lines, then snoozes and looks at
 * its chunks until all have ended, reporting `{ rowsDone, rowsFailed, total }`
 * progress. Every step is resumable: a parent run again after a crash skips
 * the lines it staged, chunks are created and enqueued once (with the state
 * change, in one transaction), and each chunk applies its rows and marks
 * itself done in one transaction.
 *
 * The chunk jobs are the parent's children (`parentId`): cancelling the
 * parent job cancels the waiting chunks and aborts the running ones, and
 * the import ends `cancelled` with a partial report of what was applied
 * (see getImportReport). A cancelled import does not resume: running the
 * parent again fails with `import_cancelled`.
 *
 * Reads IMPORT_FEED_ALLOWED_ORIGINS (required for URL feeds) and
 * IMPORT_FEED_AUTH_TOKEN (optional bearer token) from `deps.env`.
 */
export function createImportProducts(deps: HandlerDeps, options: Partial<ImportOptions> = {}): Handler {
  const o: ImportOptions = { ...DEFAULT_IMPORT_OPTIONS, ...options }
  const db: imports.ImportDb = deps.shop.withTables<ImportTables>()
  const timeouts = { totalMs: o.feedTimeoutMs, idleMs: o.feedIdleTimeoutMs }
  return defineHandler({
    type: IMPORT_PRODUCTS,
    payload: ImportProductsPayload,
    maxAttempts: 10,
    // Staging a large feed is the one long step; waiting on chunks is snoozed, not run.
    timeoutMs: 60 * 60_000,
    async run(payload, ctx) {
      const importId = ctx.job.id
      let located: FeedSource | null = null
      let current = await imports.getImport(db, importId)
      if (current?.state === 'cancelled') {
        throw new PermanentError('import_cancelled', { message: `import ${importId} was cancelled; its report says what was applied` })
      }
      if (!current) {
        located = await locateFeed(deps, ctx, payload, timeouts)
        current = await imports.createImport(db, { importId, storeId: ctx.job.storeId, format: located.format, source: located.label })
        ctx.log.info({ format: located.format, source: 'uploadId' in payload ? 'upload' : 'url' }, 'import started')
      }
      if (current.state === 'staging') {
        const feed = located ?? (await locateFeed(deps, ctx, payload, timeouts))
        const pass = await stageFeed(db, ctx, {
          importId,
          from: current.staged_through,
          records: readFeedRecords(await feed.open(), current.format, { maxFeedBytes: o.maxFeedBytes }),
          ...o,
        })
        ctx.log.info({ ...pass, resumedAfter: current.staged_through }, 'import feed staged')
        await startChunks(deps, ctx, o.chunkLines)
        current = await imports.getImport(db, importId)
      }
      if (current?.state === 'running') {
        const tally = await settleChunks(deps, db, importId)
        const rowsDone = tally.rowsDone
        const rowsFailed = (current.rows_invalid ?? 0) + tally.rowsFailed
        if (tally.done + tally.failed < tally.chunks) {
          await ctx.progress({ phase: 'importing', rowsDone, rowsFailed, total: current.rows_total, chunks: tally.chunks, chunksDone: tally.done, chunksFailed: tally.failed })
          throw snooze(o.pollMs)
        }
        await imports.finishImport(db, { importId, rowsDone, rowsFailed })
        current = await imports.getImport(db, importId)
      }
      if (current?.state !== 'done') throw new Error(`import ${importId} is in state ${current?.state ?? 'missing'} after its steps`)
      const report = await buildImportReport(db, current, o.errorSample)
      await ctx.progress({ phase: 'done', rowsDone: report.rowsDone, rowsFailed: report.rowsFailed, total: report.total })
      ctx.log.info({ total: report.total, rowsDone: report.rowsDone, rowsFailed: report.rowsFailed, chunksFailed: report.chunksFailed }, 'import finished')
      return report
    },
  })
}

/**
 * `import.products.chunk`: applies one chunk of staged feed lines to
 * shop.products (see imports.runChunk). Enqueued by the parent only.
 */
export function createImportProductsChunk(deps: HandlerDeps): Handler {
  const db: imports.ImportDb = deps.shop.withTables<ImportTables>()
  return defineHandler({
    type: IMPORT_PRODUCTS_CHUNK,
    payload: ImportProductsChunkPayload,
    maxAttempts: 10,
    timeoutMs: 10 * 60_000,
    // A chunk writes thousands of rows: it weighs more in fair sharing than a one-call job.
    cost: 5,
    async run(payload, ctx) {
      if (ctx.signal.aborted) throw ctx.signal.reason
      const { importId, chunkNo } = payload
      const storeId = ctx.job.storeId
      let out: imports.ChunkRun
      try {
        out = await imports.runChunk(db, {
          importId,
          chunkNo,
          storeId,
          signal: ctx.signal,
          onCancelFailed: (err) => ctx.log.warn({ errMessage: err instanceof Error ? err.message : String(err) }, 'import chunk statement not cancelled'),
        })
      } catch (err) {
        // Stopped before its commit: if that was the import's cancellation, this chunk is
        // cancelled, and the last chunk to stop ends the import (the waiting ones never run).
        if (ctx.signal.aborted && (await settleStoppedChunk(deps, db, { importId, chunkNo, storeId }))) {
          ctx.log.info({ importId, chunkNo }, 'import chunk cancelled with its import')
        }
        throw err
      }
      if (out.kind === 'missing') {
        throw new PermanentError('chunk_not_found', { message: `the store has no chunk ${chunkNo} of import ${importId}` })
      }
      if (out.kind === 'closed' && out.state !== 'done') {
        throw new PermanentError('chunk_closed', { message: `the import has counted this chunk as ${out.state} already` })
      }
      if (out.kind === 'closed') return { rows: out.rows, alreadyDone: true }
      ctx.log.info({ rows: out.rows, upserted: out.upserted, importId, chunkNo }, 'import chunk applied')
      return { rows: out.rows, upserted: out.upserted }
    },
  })
}

/**
 * After a chunk's run stopped without applying its rows: if the import's
 * parent job was cancelled, marks the chunk `cancelled` (its transaction
 * rolled back, so nothing of it was applied) and tries to end the import
 * (settleCancelledImport). Returns whether the chunk was cancelled so.
 */
async function settleStoppedChunk(deps: HandlerDeps, db: imports.ImportDb, args: { importId: string; chunkNo: number; storeId: string }): Promise<boolean> {
  const parent = await getJob(deps.db.kysely, args.importId, { storeId: args.storeId }).catch((err: unknown) => {
    if (err instanceof JobNotFoundError) return null
    throw err
  })
  // Only a cancelled parent: a run stopped by a timeout or a shutdown runs again. (A parent
  // whose own run is being cancelled is not cancelled yet; getImportReport settles that later.)
  if (parent?.state !== 'cancelled') return false
  await imports.closeChunk(db, { ...args, state: 'cancelled', code: 'parent_cancelled', message: `import ${args.importId} was cancelled` })
  await settleCancelledImport(deps, db, args)
  return true
}

/**
 * Ends staging: counts the staged lines, cuts them into chunks and enqueues
 * a job per chunk, and moves the import to `running`, all in one transaction
 * on the queue's connection (the enqueue is part of it). The import row is
 * locked first, so a second run racing this one (a lost lease) finds it
 * running and adds nothing; the chunks' dedupe keys guard the same.
 */
async function startChunks(deps: HandlerDeps, ctx: HandlerContext, chunkLines: number): Promise<void> {
  const importId = ctx.job.id
  try {
    await deps.db.kysely.transaction().execute(async (trx) => {
      if ((await imports.lockImport(trx, importId)) !== 'staging') return
      const totals = await imports.stagedTotals(trx, importId)
      const chunks = await imports.createChunks(trx, { importId, chunkLines })
      const enqueued = await enqueueMany(
        trx,
        chunks.map((c) => ({
          type: IMPORT_PRODUCTS_CHUNK,
          storeId: ctx.job.storeId,
          payload: { importId, chunkNo: c.chunkNo },
          priority: ctx.job.priority,
          dedupeKey: `import:${importId}:chunk:${c.chunkNo}`,
          // Cancelling the import's job cancels its chunks.
          parentId: importId,
          ...(ctx.job.userId ? { userId: ctx.job.userId } : {}),
        })),
      )
      await imports.setChunkJobs(trx, importId, chunks.map((c, i) => ({ chunkNo: c.chunkNo, jobId: enqueued[i]!.job.id })))
      await imports.markRunning(trx, { importId, totals, chunks: chunks.length })
      ctx.log.info({ chunks: chunks.length, rowsValid: totals.valid, rowsInvalid: totals.invalid }, 'import chunks enqueued')
    })
  } catch (err) {
    // The store is at its live-job cap: wait for room without spending an attempt.
    if (err instanceof StoreCapacityError) throw snooze(err.retryAfterMs)
    throw err
  }
}

/**
 * Marks chunks whose job ended without applying them (failed after its
 * attempts, cancelled, gone) as failed, then tallies all chunks. A chunk
 * that applied its rows is marked done by itself, in its own transaction.
 */
async function settleChunks(deps: HandlerDeps, db: imports.ImportDb, importId: string): Promise<imports.ChunkTally> {
  for (const chunk of await imports.pendingChunks(db, importId, SETTLE_LOOKUPS)) {
    if (chunk.job_id === null) continue
    let ended: { code: string; message: string } | null = null
    try {
      const job = await getJob(deps.db.kysely, chunk.job_id)
      if (job.state === 'failed' || job.state === 'cancelled') {
        ended = { code: job.lastError?.code ?? job.state, message: job.lastError?.message ?? `chunk job ${job.state}` }
      }
    } catch (err) {
      if (!(err instanceof JobNotFoundError)) throw err
      ended = { code: 'chunk_job_missing', message: `chunk job ${chunk.job_id} no longer exists` }
    }
    if (ended) await imports.closeChunk(db, { importId, chunkNo: chunk.chunk_no, state: 'failed', ...ended })
  }
  return imports.tallyChunks(db, importId)
}
