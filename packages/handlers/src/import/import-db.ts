import { sql, type Kysely, type QueryExecutorProvider } from 'kysely'
import type { ProductRow } from './feed/parse-product-row.ts'
import { storableText } from './feed/storable-text.ts'
import type { ChunkState, FeedFormat, ImportDatabase, RowErrorCode } from './import-tables.ts'

// Every statement of the import on its own tables and on shop.products. Bulk
// statements are raw `sql` over unnest(): one statement with nine array
// parameters per batch, where a builder would bind nine per row.

/** The shop view widened with the import's tables. */
export type ImportDb = Kysely<ImportDatabase>

/**
 * Any Kysely instance or transaction, whatever its schema type: the
 * statements that run inside the queue's transaction (with the chunks'
 * enqueue) take this, as Kysely's schema types do not convert.
 */
export type SqlExecutor = QueryExecutorProvider

/** A rejected line for the error report. */
export interface RowError {
  readonly line: number
  readonly sku: string | null
  readonly code: RowErrorCode
  readonly reason: string
}

/** Characters of a rejected line's SKU and reason kept in the report (the SKU bound, and room for any reason). */
const ERROR_SKU_CHARS = 128
const ERROR_REASON_CHARS = 500

/** A valid line for staging. */
export interface StagedRow {
  readonly line: number
  readonly row: ProductRow
}

/** The import of parent job `importId`, if it was started. */
export async function getImport(db: ImportDb, importId: string) {
  return db.selectFrom('shop.product_imports').selectAll().where('import_id', '=', importId).executeTakeFirst()
}

/** Records an import (once: a second call for the same job changes nothing) and returns it. */
export async function createImport(db: ImportDb, args: { importId: string; storeId: string; format: FeedFormat; source: string }) {
  await db
    .insertInto('shop.product_imports')
    .values({ import_id: args.importId, store_id: args.storeId, format: args.format, source: args.source, rows_total: null, rows_valid: null, rows_invalid: null, skus: null, chunks: null, rows_done: null, rows_failed: null, finished_at: null })
    .onConflict((oc) => oc.column('import_id').doNothing())
    .execute()
  const row = await getImport(db, args.importId)
  if (!row) throw new Error(`import ${args.importId} vanished after insert`)
  return row
}

/** What a staging batch wrote: rows staged and lines recorded as rejected. */
export interface StagedBatch {
  readonly rows: number
  readonly errors: number
}

/**
 * Stages one batch of feed lines, valid and rejected, and moves the import's
 * resume point to `through` in the same transaction: after a crash, lines up
 * to it are skipped, and any line staged twice is ignored (conflict on the line).
 *
 * A rejected line's SKU and reason are made storable first (storableText),
 * so the report of a bad line is always written. Should the database still
 * refuse a valid row's data (a check this reader does not make), the batch
 * is staged again line by line and that row becomes a rejected line
 * (`unstorable_row`): one row never fails the import.
 */
export async function stageBatch(
  db: ImportDb,
  args: { importId: string; rows: ReadonlyArray<StagedRow>; errors: ReadonlyArray<RowError>; through: number },
): Promise<StagedBatch> {
  const errors = args.errors.map((e) => ({ ...e, sku: e.sku === null ? null : storableText(e.sku, ERROR_SKU_CHARS), reason: storableText(e.reason, ERROR_REASON_CHARS) }))
  try {
    await writeBatch(db, { ...args, errors })
    return { rows: args.rows.length, errors: errors.length }
  } catch (err) {
    if (!isDataError(err) || args.rows.length === 0) throw err
  }
  return stageLineByLine(db, { importId: args.importId, rows: args.rows, errors, through: args.through })
}

/**
 * The slow path of stageBatch: each line in its own transaction, in line
 * order (the resume point never passes a line not written), a row the
 * database refuses recorded as rejected in its place.
 */
async function stageLineByLine(
  db: ImportDb,
  args: { importId: string; rows: ReadonlyArray<StagedRow>; errors: ReadonlyArray<RowError>; through: number },
): Promise<StagedBatch> {
  const lines = [...args.rows.map((row) => ({ row, error: null })), ...args.errors.map((error) => ({ row: null, error }))]
  lines.sort((a, b) => (a.row?.line ?? a.error!.line) - (b.row?.line ?? b.error!.line))
  let rows = 0
  let errors = 0
  for (const [i, { row, error }] of lines.entries()) {
    // The last line moves the resume point to the batch's end, as one batch would.
    const through = i === lines.length - 1 ? args.through : (row?.line ?? error!.line)
    if (error) {
      await writeBatch(db, { importId: args.importId, rows: [], errors: [error], through })
      errors++
      continue
    }
    try {
      await writeBatch(db, { importId: args.importId, rows: [row!], errors: [], through })
      rows++
    } catch (err) {
      if (!isDataError(err)) throw err
      const code = (err as { code: string }).code
      const refused: RowError = {
        line: row!.line,
        sku: storableText(row!.row.sku, ERROR_SKU_CHARS),
        code: 'unstorable_row',
        // The SQLSTATE only: the server's message may quote the row's text.
        reason: `row: the database cannot store this row (SQLSTATE ${code})`,
      }
      await writeBatch(db, { importId: args.importId, rows: [], errors: [refused], through })
      errors++
    }
  }
  return { rows, errors }
}

/**
 * A PostgreSQL error about the data of a statement, not the statement or
 * the server: class 22 (data exception: bad encoding, a value out of range,
 * bad JSON) and class 54 (program limit exceeded: nesting too deep).
 */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^(22|54)[0-9A-Z]{3}$/.test(code)
}

async function writeBatch(
  db: ImportDb,
  args: { importId: string; rows: ReadonlyArray<StagedRow>; errors: ReadonlyArray<RowError>; through: number },
): Promise<void> {
  const { importId, rows, errors } = args
  await db.transaction().execute(async (trx) => {
    if (rows.length > 0) {
      // Expects the primary key (import_id, line_no) for the conflict check.
      await sql`
        insert into shop.product_import_rows (import_id, line_no, sku, title, description, price, currency, stock, attributes)
        select ${importId}::bigint, u.*
        from unnest(
          ${rows.map((r) => r.line)}::int[], ${rows.map((r) => r.row.sku)}::text[], ${rows.map((r) => r.row.title)}::text[],
          ${rows.map((r) => r.row.description)}::text[], ${rows.map((r) => r.row.price)}::numeric[], ${rows.map((r) => r.row.currency)}::text[],
          ${rows.map((r) => r.row.stock)}::int[], ${rows.map((r) => r.row.attributes)}::jsonb[]
        ) as u
        on conflict (import_id, line_no) do nothing
      `.execute(trx)
    }
    if (errors.length > 0) {
      // Expects the primary key (import_id, line_no) for the conflict check.
      await sql`
        insert into shop.product_import_errors (import_id, line_no, sku, code, reason)
        select ${importId}::bigint, u.*
        from unnest(${errors.map((e) => e.line)}::int[], ${errors.map((e) => e.sku)}::text[], ${errors.map((e) => e.code)}::text[], ${errors.map((e) => e.reason)}::text[]) as u
        on conflict (import_id, line_no) do nothing
      `.execute(trx)
    }
    await trx
      .updateTable('shop.product_imports')
      .set({ staged_through: args.through, updated_at: new Date() })
      .where('import_id', '=', importId)
      .where('staged_through', '<', args.through)
      .execute()
  })
}

/** Locks an import's row until the transaction ends and returns its state. */
export async function lockImport(db: SqlExecutor, importId: string): Promise<string | null> {
  const { rows } = await sql<{ state: string }>`
    select state from shop.product_imports where import_id = ${importId}::bigint for update
  `.execute(db)
  return rows[0]?.state ?? null
}

/** Staging is over: the import waits on its chunks from now on. */
export async function markRunning(db: SqlExecutor, args: { importId: string; totals: StagedTotals; chunks: number }): Promise<void> {
  const { importId, totals, chunks } = args
  await sql`
    update shop.product_imports
    set state = 'running', rows_total = ${totals.valid + totals.invalid}, rows_valid = ${totals.valid}, rows_invalid = ${totals.invalid},
        skus = ${totals.skus}, chunks = ${chunks}, updated_at = now()
    where import_id = ${importId}::bigint
  `.execute(db)
}

/** Counts of a staged feed. */
export interface StagedTotals {
  readonly valid: number
  readonly invalid: number
  /** Distinct SKUs among the valid lines. */
  readonly skus: number
}

/** Counts the staged lines of an import. */
export async function stagedTotals(db: SqlExecutor, importId: string): Promise<StagedTotals> {
  const { rows } = await sql<{ valid: string; skus: string; invalid: string }>`
    select (select count(*) from shop.product_import_rows where import_id = ${importId}::bigint) as valid,
           (select count(distinct sku) from shop.product_import_rows where import_id = ${importId}::bigint) as skus,
           (select count(*) from shop.product_import_errors where import_id = ${importId}::bigint) as invalid
  `.execute(db)
  const r = rows[0]!
  return { valid: Number(r.valid), invalid: Number(r.invalid), skus: Number(r.skus) }
}

/**
 * Cuts the staged lines into chunks of `chunkLines` feed lines (a chunk
 * holds at most that many rows, fewer where lines were rejected) and
 * returns the chunks created; none for an import chunked already.
 */
export async function createChunks(db: SqlExecutor, args: { importId: string; chunkLines: number }): Promise<Array<{ chunkNo: number; rows: number }>> {
  const { rows } = await sql<{ chunk_no: number; rows: number }>`
    insert into shop.product_import_chunks (import_id, chunk_no, first_line, last_line, rows)
    select ${args.importId}::bigint, (line_no - 1) / ${args.chunkLines}::int, min(line_no), max(line_no), count(*)
    from shop.product_import_rows
    where import_id = ${args.importId}::bigint
    group by 2
    on conflict (import_id, chunk_no) do nothing
    returning chunk_no, rows
  `.execute(db)
  return rows.map((r) => ({ chunkNo: r.chunk_no, rows: r.rows }))
}

/** Records each chunk's job id. */
export async function setChunkJobs(db: SqlExecutor, importId: string, jobs: ReadonlyArray<{ chunkNo: number; jobId: string }>): Promise<void> {
  if (jobs.length === 0) return
  await sql`
    update shop.product_import_chunks c set job_id = u.job_id
    from unnest(${jobs.map((j) => j.chunkNo)}::int[], ${jobs.map((j) => j.jobId)}::bigint[]) as u (chunk_no, job_id)
    where c.import_id = ${importId}::bigint and c.chunk_no = u.chunk_no
  `.execute(db)
}

/** Where an import's chunks stand. */
export interface ChunkTally {
  readonly chunks: number
  readonly done: number
  readonly failed: number
  readonly cancelled: number
  readonly rowsDone: number
  readonly rowsFailed: number
  readonly rowsCancelled: number
}

/** Counts an import's chunks and their rows by state (primary key: one import's chunks). */
export async function tallyChunks(db: ImportDb, importId: string): Promise<ChunkTally> {
  const { rows } = await sql<{ chunks: string; done: string; failed: string; cancelled: string; rows_done: string; rows_failed: string; rows_cancelled: string }>`
    select count(*) as chunks,
           count(*) filter (where state = 'done') as done,
           count(*) filter (where state = 'failed') as failed,
           count(*) filter (where state = 'cancelled') as cancelled,
           coalesce(sum(rows) filter (where state = 'done'), 0) as rows_done,
           coalesce(sum(rows) filter (where state = 'failed'), 0) as rows_failed,
           coalesce(sum(rows) filter (where state = 'cancelled'), 0) as rows_cancelled
    from shop.product_import_chunks where import_id = ${importId}::bigint
  `.execute(db)
  const r = rows[0]!
  return {
    chunks: Number(r.chunks),
    done: Number(r.done),
    failed: Number(r.failed),
    cancelled: Number(r.cancelled),
    rowsDone: Number(r.rows_done),
    rowsFailed: Number(r.rows_failed),
    rowsCancelled: Number(r.rows_cancelled),
  }
}

/** Chunks not ended yet, with their job ids: at most `limit`, from chunk `after + 1` on. */
export async function pendingChunks(db: ImportDb, importId: string, limit: number, after = -1) {
  return db
    .selectFrom('shop.product_import_chunks')
    .select(['chunk_no', 'job_id'])
    .where('import_id', '=', importId)
    .where('state', '=', 'pending')
    .where('chunk_no', '>', after)
    .orderBy('chunk_no')
    .limit(limit)
    .execute()
}

/**
 * Ends a chunk that did not apply its rows: `failed` (its job failed, or was
 * cancelled by itself while the import went on) or `cancelled` (the import
 * was). A chunk done meanwhile stays done: runChunk holds the chunk's row
 * lock while it applies, so this waits for it and then finds it done.
 */
export async function closeChunk(
  db: ImportDb,
  args: { importId: string; chunkNo: number; state: 'failed' | 'cancelled'; code: string; message: string },
): Promise<void> {
  await db
    .updateTable('shop.product_import_chunks')
    .set({ state: args.state, error: JSON.stringify({ code: args.code, message: args.message }), finished_at: new Date() })
    .where('import_id', '=', args.importId)
    .where('chunk_no', '=', args.chunkNo)
    .where('state', '=', 'pending')
    .execute()
}

/** An import's chunks in `state`, by chunk number (at most `limit`), for the report. */
export async function chunksIn(db: ImportDb, importId: string, state: ChunkState, limit: number) {
  return db
    .selectFrom('shop.product_import_chunks')
    .select(['chunk_no', 'first_line', 'last_line', 'rows', 'error'])
    .where('import_id', '=', importId)
    .where('state', '=', state)
    .orderBy('chunk_no')
    .limit(limit)
    .execute()
}

/** The first rejected lines of an import, by line. */
export async function errorSample(db: ImportDb, importId: string, limit: number): Promise<RowError[]> {
  const rows = await db
    .selectFrom('shop.product_import_errors')
    .select(['line_no', 'sku', 'code', 'reason'])
    .where('import_id', '=', importId)
    .orderBy('line_no')
    .limit(limit)
    .execute()
  return rows.map((r) => ({ line: r.line_no, sku: r.sku, code: r.code, reason: r.reason }))
}

/** A chunk's outcome. */
export type ChunkRun =
  | { readonly kind: 'missing' }
  | { readonly kind: 'closed'; readonly state: 'done' | 'failed' | 'cancelled'; readonly rows: number }
  | { readonly kind: 'ran'; readonly rows: number; readonly upserted: number }

/**
 * Upserts one chunk's staged rows into shop.products and marks the chunk
 * done, in one transaction: a chunk is applied entirely or not at all, and a
 * second run (after a crash, or a run whose lease was lost) finds it done.
 *
 * `signal` (the run's) stops it: an abort cancels the statement in progress
 * (pg_cancel_backend, see cancelOnAbort), so a chunk waiting on a row lock
 * or midway through a large upsert rolls back at once; the chunk stays
 * pending and the signal's reason is thrown. An abort after the rows were
 * written but before the commit rolls back too. `onCancelFailed` hears of a
 * cancel request the server did not take (the run then ends when the
 * statement does).
 *
 * Within a feed the later line of a SKU wins: a row is skipped when a later
 * line has the same SKU, wherever that line's chunk runs. An empty stock cell
 * leaves the stored stock as it is. Rows go in SKU order, so concurrent
 * imports of one store lock products in the same order (no deadlock).
 */
export async function runChunk(
  db: ImportDb,
  args: { importId: string; chunkNo: number; storeId: string; signal?: AbortSignal; onCancelFailed?: (err: unknown) => void },
): Promise<ChunkRun> {
  args.signal?.throwIfAborted()
  return db.transaction().execute(async (trx) => {
    const stopWatching = args.signal ? await cancelOnAbort(db, trx, args.signal, args.onCancelFailed ?? (() => {})) : () => {}
    try {
      return await applyChunk(trx, args)
    } catch (err) {
      // A cancelled statement surfaces as SQLSTATE 57014: report why it was cancelled instead.
      args.signal?.throwIfAborted()
      throw err
    } finally {
      stopWatching()
    }
  })
}

async function applyChunk(trx: ImportDb, args: { importId: string; chunkNo: number; storeId: string; signal?: AbortSignal }): Promise<ChunkRun> {
  const chunk = await trx
    .selectFrom('shop.product_import_chunks as c')
    .innerJoin('shop.product_imports as i', 'i.import_id', 'c.import_id')
    .select(['c.first_line', 'c.last_line', 'c.rows', 'c.state'])
    .where('c.import_id', '=', args.importId)
    .where('c.chunk_no', '=', args.chunkNo)
    .where('i.store_id', '=', args.storeId)
    .forUpdate('c')
    .executeTakeFirst()
  if (!chunk) return { kind: 'missing' }
  if (chunk.state !== 'pending') return { kind: 'closed', state: chunk.state, rows: chunk.rows }
  const result = await sql`
    insert into shop.products as p (store_id, sku, title, description, price, currency, stock, attributes)
    select ${args.storeId}, r.sku, r.title, r.description, r.price, r.currency, r.stock, r.attributes
    from shop.product_import_rows r
    where r.import_id = ${args.importId}::bigint
      and r.line_no between ${chunk.first_line} and ${chunk.last_line}
      and not exists (
        select 1 from shop.product_import_rows later
        where later.import_id = r.import_id and later.sku = r.sku and later.line_no > r.line_no
      )
    order by r.sku
    on conflict (store_id, sku) do update set
      title = excluded.title,
      description = excluded.description,
      price = excluded.price,
      currency = excluded.currency,
      stock = coalesce(excluded.stock, p.stock),
      attributes = excluded.attributes,
      updated_at = now()
    where (p.title, p.description, p.price, p.currency, p.stock, p.attributes)
          is distinct from (excluded.title, excluded.description, excluded.price, excluded.currency, coalesce(excluded.stock, p.stock), excluded.attributes)
  `.execute(trx)
  const upserted = Number(result.numAffectedRows ?? 0)
  // Aborted while the upsert finished: roll it back rather than commit a chunk its job gave up.
  args.signal?.throwIfAborted()
  await trx
    .updateTable('shop.product_import_chunks')
    .set({ state: 'done', upserted, finished_at: new Date() })
    .where('import_id', '=', args.importId)
    .where('chunk_no', '=', args.chunkNo)
    .execute()
  return { kind: 'ran', rows: chunk.rows, upserted }
}

/**
 * Until the returned function is called, an abort of `signal` cancels the
 * statement `trx` is running, from another connection of `db`. The target
 * is named by backend pid and transaction start (microseconds, read inside
 * `trx`): once `trx` ended, its connection may serve someone else's
 * transaction, which has another start, so a late abort cancels nothing.
 */
async function cancelOnAbort(db: ImportDb, trx: ImportDb, signal: AbortSignal, onFailed: (err: unknown) => void): Promise<() => void> {
  const { rows } = await sql<{ pid: number; started_us: string }>`
    select pg_backend_pid() as pid, (extract(epoch from now()) * 1000000)::bigint::text as started_us
  `.execute(trx)
  const { pid, started_us: startedUs } = rows[0]!
  const cancel = () => {
    // pg_stat_activity is a view over shared memory: no index involved.
    sql`
      select pg_cancel_backend(pid) from pg_stat_activity
      where pid = ${pid} and (extract(epoch from xact_start) * 1000000)::bigint = ${startedUs}::bigint
    `
      .execute(db)
      .catch(onFailed)
  }
  if (signal.aborted) cancel()
  else signal.addEventListener('abort', cancel, { once: true })
  return () => signal.removeEventListener('abort', cancel)
}

/**
 * Ends an import: its final counts, and its staged rows deleted (the error
 * report stays). Only from `running`: a second call changes nothing.
 */
export async function finishImport(db: ImportDb, args: { importId: string; rowsDone: number; rowsFailed: number }): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const ended = await trx
      .updateTable('shop.product_imports')
      .set({ state: 'done', rows_done: args.rowsDone, rows_failed: args.rowsFailed, finished_at: new Date(), updated_at: new Date() })
      .where('import_id', '=', args.importId)
      .where('state', '=', 'running')
      .executeTakeFirst()
    if (Number(ended.numUpdatedRows) === 1) {
      await trx.deleteFrom('shop.product_import_rows').where('import_id', '=', args.importId).execute()
    }
  })
}

/**
 * Ends an import whose parent job was cancelled, once no chunk is pending
 * (each applied, failed or cancelled): state `cancelled`, its counts from
 * the chunks (rows done: applied chunks' rows; rows failed: rejected lines
 * plus failed chunks' rows; the cancelled chunks' rows are neither), and
 * its staged rows deleted. Only from `staging` or `running`; returns
 * whether this call ended it. Expects the primary keys of both tables.
 */
export async function cancelImport(db: ImportDb, importId: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const ended = await sql`
      update shop.product_imports i
      set state = 'cancelled',
          rows_done = c.rows_done,
          rows_failed = coalesce(i.rows_invalid, 0) + c.rows_failed,
          finished_at = now(),
          updated_at = now()
      from (
        select coalesce(sum(rows) filter (where state = 'done'), 0)::int as rows_done,
               coalesce(sum(rows) filter (where state = 'failed'), 0)::int as rows_failed
        from shop.product_import_chunks where import_id = ${importId}::bigint
      ) c
      where i.import_id = ${importId}::bigint and i.state in ('staging', 'running')
        and not exists (select 1 from shop.product_import_chunks p where p.import_id = ${importId}::bigint and p.state = 'pending')
    `.execute(trx)
    if (Number(ended.numAffectedRows ?? 0) !== 1) return false
    await trx.deleteFrom('shop.product_import_rows').where('import_id', '=', importId).execute()
    return true
  })
}
