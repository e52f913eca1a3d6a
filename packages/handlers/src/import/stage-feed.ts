import type { HandlerContext } from '@backroom/queue-core'
import { stageBatch, type ImportDb, type RowError, type StagedRow } from './import-db.ts'
import type { FeedRecord } from './feed/read-feed-records.ts'

/** How staging batches and reports. */
export interface StagingOptions {
  /** Lines per staging transaction. */
  readonly batchRows: number
  /** Characters of row text per staging transaction (long descriptions make fewer rows a batch). */
  readonly batchChars: number
  /** Least time between two progress reports. */
  readonly progressEveryMs: number
}

/** What one staging pass did (this run only: an earlier, crashed run's lines are not in it). */
export interface StagingPass {
  readonly lastLine: number
  readonly staged: number
  readonly rejected: number
  readonly skipped: number
}

/**
 * Streams a feed's records into the staging tables in batches, each batch
 * one transaction that also moves the import's resume point. Lines up to
 * `from` (staged by an earlier run) are read past without a write. Checks
 * the run's AbortSignal between batches.
 */
export async function stageFeed(
  db: ImportDb,
  ctx: Pick<HandlerContext, 'signal' | 'progress'>,
  args: { importId: string; from: number; records: AsyncIterable<FeedRecord> } & StagingOptions,
): Promise<StagingPass> {
  let rows: StagedRow[] = []
  let errors: RowError[] = []
  let chars = 0
  let lastLine = args.from
  let staged = 0
  let rejected = 0
  let skipped = 0
  let reported = Date.now()
  const flush = async () => {
    if (rows.length + errors.length === 0) return
    const written = await stageBatch(db, { importId: args.importId, rows, errors, through: lastLine })
    staged += written.rows
    rejected += written.errors
    rows = []
    errors = []
    chars = 0
    if (ctx.signal.aborted) throw ctx.signal.reason
    if (Date.now() - reported >= args.progressEveryMs) {
      reported = Date.now()
      await ctx.progress({ phase: 'staging', linesRead: lastLine, rowsDone: 0, rowsFailed: null, total: null })
    }
  }
  for await (const record of args.records) {
    if (record.line <= args.from) {
      skipped++
      continue
    }
    lastLine = record.line
    if (record.parsed.ok) {
      const row = record.parsed.row
      rows.push({ line: record.line, row })
      chars += row.title.length + row.description.length + row.attributes.length + row.sku.length
    } else {
      errors.push({ line: record.line, sku: record.parsed.sku, code: record.parsed.code, reason: record.parsed.reason })
    }
    if (rows.length + errors.length >= args.batchRows || chars >= args.batchChars) await flush()
  }
  await flush()
  return { lastLine, staged, rejected, skipped }
}
