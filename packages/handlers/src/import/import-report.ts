import { getJob, JobNotFoundError } from '@backroom/queue-core'
import type { HandlerDeps } from '../lib/deps.ts'
import * as imports from './import-db.ts'
import type { ImportState, ImportTables } from './import-tables.ts'

/** Chunks listed per state in a report (all of them: shop.product_import_chunks). */
const CHUNKS_LISTED = 100
/** Failed chunks listed in the result. */
const FAILED_CHUNKS_LISTED = 20
/** Pending chunks whose jobs one page of a settle looks up. */
const SETTLE_PAGE = 200
/** Rejected lines in a report read by {@link getImportReport}. */
const DEFAULT_ERROR_SAMPLE = 50

/** A range of feed lines one chunk job covered. */
export interface ChunkRange {
  readonly chunkNo: number
  readonly firstLine: number
  readonly lastLine: number
  /** Valid lines in the range. */
  readonly rows: number
}

/**
 * An import's outcome: the parent job's result when it completes (under the
 * queue's 64 KiB result bound), and what {@link getImportReport} returns at
 * any time, including the partial report of a cancelled import.
 *
 * Lines add up: `total = rowsDone + rowsFailed + rowsCancelled` once the
 * import ended (`done` or `cancelled`).
 */
export interface ImportReport {
  readonly importId: string
  readonly state: ImportState
  readonly format: string
  /** Data lines of the feed (valid + rejected); 0 until staging ended. */
  readonly total: number
  /** Valid lines applied (a SKU's earlier lines count as applied: the later line won). */
  readonly rowsDone: number
  /** Rejected lines plus the lines of failed chunks. */
  readonly rowsFailed: number
  /** Valid lines never applied because the import was cancelled before their chunk ran. */
  readonly rowsCancelled: number
  readonly rowsInvalid: number
  /** Distinct SKUs among the valid lines. */
  readonly skus: number
  readonly chunks: number
  readonly chunksDone: number
  readonly chunksFailed: number
  readonly chunksCancelled: number
  readonly failedChunks: ReadonlyArray<ChunkRange & { code: string; message: string }>
  /**
   * The chunks that applied their rows, for a cancelled import only (a
   * completed one applied every chunk but the failed ones): the first 100.
   */
  readonly appliedChunks: ReadonlyArray<ChunkRange>
  /** The chunks cancelled before they applied anything: the first 100. */
  readonly cancelledChunks: ReadonlyArray<ChunkRange>
  /** The first rejected lines (all of them: shop.product_import_errors). */
  readonly errors: ReadonlyArray<imports.RowError>
  readonly errorsTruncated: boolean
}

type ImportRow = NonNullable<Awaited<ReturnType<typeof imports.getImport>>>

/** The report of an import, from its row and its chunk and error tables. */
export async function buildImportReport(db: imports.ImportDb, row: ImportRow, sample: number): Promise<ImportReport> {
  const tally = await imports.tallyChunks(db, row.import_id)
  const failed = await imports.chunksIn(db, row.import_id, 'failed', FAILED_CHUNKS_LISTED)
  const applied = row.state === 'cancelled' ? await imports.chunksIn(db, row.import_id, 'done', CHUNKS_LISTED) : []
  const cancelled = await imports.chunksIn(db, row.import_id, 'cancelled', CHUNKS_LISTED)
  const errors = await imports.errorSample(db, row.import_id, sample)
  const range = (c: (typeof failed)[number]): ChunkRange => ({ chunkNo: c.chunk_no, firstLine: c.first_line, lastLine: c.last_line, rows: c.rows })
  return {
    importId: row.import_id,
    state: row.state,
    format: row.format,
    total: row.rows_total ?? 0,
    rowsDone: tally.rowsDone,
    rowsFailed: (row.rows_invalid ?? 0) + tally.rowsFailed,
    rowsCancelled: tally.rowsCancelled,
    rowsInvalid: row.rows_invalid ?? 0,
    skus: row.skus ?? 0,
    chunks: row.chunks ?? 0,
    chunksDone: tally.done,
    chunksFailed: tally.failed,
    chunksCancelled: tally.cancelled,
    failedChunks: failed.map((c) => ({ ...range(c), code: c.error?.code ?? 'failed', message: (c.error?.message ?? '').slice(0, 300) })),
    appliedChunks: applied.map(range),
    cancelledChunks: cancelled.map(range),
    errors,
    errorsTruncated: (row.rows_invalid ?? 0) > errors.length,
  }
}

/**
 * An import's report, read where an operator looks for it: by the parent
 * job's id, within `scope` (a store sees only its own imports; null for the
 * platform). Null when there is no such import.
 *
 * An import whose parent job was cancelled is settled first: each chunk
 * whose job ended without applying its rows is marked `cancelled` (or
 * `failed`, if its job failed), and once no chunk job is still winding down
 * the import moves to `cancelled` with its final counts (see settleCancelledImport).
 * The chunk jobs settle it themselves when the last running one is aborted;
 * this covers imports cancelled while no chunk was running. Idempotent.
 *
 * @example
 * const report = await getImportReport(deps, jobId, { storeId: 'store-42' })
 * // { state: 'cancelled', rowsDone: 80, rowsCancelled: 320, appliedChunks: [...], cancelledChunks: [...] }
 */
export async function getImportReport(
  deps: HandlerDeps,
  importId: string,
  scope: { readonly storeId: string | null },
): Promise<ImportReport | null> {
  if (!/^[1-9][0-9]{0,18}$/.test(importId)) return null
  const db: imports.ImportDb = deps.shop.withTables<ImportTables>()
  const owned = (row: ImportRow | undefined) => (row && (scope.storeId === null || row.store_id === scope.storeId) ? row : undefined)
  let row = owned(await imports.getImport(db, importId))
  if (!row) return null
  if (row.state === 'staging' || row.state === 'running') {
    await settleCancelledImport(deps, db, { importId, storeId: row.store_id })
    row = owned(await imports.getImport(db, importId))
    if (!row) return null
  }
  return buildImportReport(db, row, DEFAULT_ERROR_SAMPLE)
}

/**
 * If the import's parent job was cancelled: closes every pending chunk
 * whose job has ended (cancelled → `cancelled`, failed or gone → `failed`),
 * then ends the import as `cancelled` when no chunk is left pending. A chunk
 * whose job is still live (a running one asked to stop) is left for later.
 * Returns whether the import is cancelled now. Does nothing while the
 * parent job is live or if it ended otherwise.
 */
export async function settleCancelledImport(
  deps: HandlerDeps,
  db: imports.ImportDb,
  args: { readonly importId: string; readonly storeId: string },
): Promise<boolean> {
  const scope = { storeId: args.storeId }
  const parent = await getJob(deps.db.kysely, args.importId, scope).catch((err: unknown) => {
    if (err instanceof JobNotFoundError) return null
    throw err
  })
  if (parent?.state !== 'cancelled') return false
  for (let after = -1; ; ) {
    const page = await imports.pendingChunks(db, args.importId, SETTLE_PAGE, after)
    for (const chunk of page) {
      after = chunk.chunk_no
      const ended = chunk.job_id === null ? null : await endedJob(deps, chunk.job_id, scope)
      if (ended === 'live') continue
      const state = ended === null || ended.state === 'cancelled' ? 'cancelled' : 'failed'
      const code = ended?.code ?? 'parent_cancelled'
      const message = ended?.message ?? `import ${args.importId} was cancelled`
      await imports.closeChunk(db, { importId: args.importId, chunkNo: chunk.chunk_no, state, code, message })
    }
    if (page.length < SETTLE_PAGE) break
  }
  // Ends it only if no chunk is pending (the statement checks again).
  await imports.cancelImport(db, args.importId)
  return (await imports.getImport(db, args.importId))?.state === 'cancelled'
}

/** How a chunk's job ended, or 'live' while it has not; a job gone from history counts as failed. */
async function endedJob(
  deps: HandlerDeps,
  jobId: string,
  scope: { storeId: string },
): Promise<'live' | { state: 'cancelled' | 'failed'; code: string; message: string }> {
  try {
    const job = await getJob(deps.db.kysely, jobId, scope)
    if (job.state === 'cancelled' || job.state === 'failed') {
      return { state: job.state, code: job.lastError?.code ?? job.state, message: job.lastError?.message ?? `chunk job ${job.state}` }
    }
    // Completed: it marked the chunk done before it ended (after this page was read), so closeChunk changes nothing.
    if (job.state === 'completed') return { state: 'failed', code: 'chunk_completed', message: 'the chunk job completed' }
    return 'live'
  } catch (err) {
    if (!(err instanceof JobNotFoundError)) throw err
    return { state: 'failed', code: 'chunk_job_missing', message: `chunk job ${jobId} no longer exists` }
  }
}
