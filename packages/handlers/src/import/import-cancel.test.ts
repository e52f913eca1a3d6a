import { cancelJob, configureJobType, createWorkerPool, getJob, pauseStore, retryJob, type Job } from '@backroom/queue-core'
import { waitFor } from '@backroom/queue-core/testing'
import { sql } from 'kysely'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { saveFeedUpload } from './feed/feed-uploads.ts'
import { createImportProducts, createImportProductsChunk, importTypeSettings, type ImportOptions } from './import-products.ts'
import { getImportReport } from './import-report.ts'
import type { ImportTables } from './import-tables.ts'

const bed = useHandlerTestBed()
const shop = () => bed.deps().shop.withTables<ImportTables>()

/**
 * 40 feed lines per chunk: data lines 2..400 make chunks 0..9 (chunk 0 holds
 * lines 2-40, chunk k lines 40k+1..40k+40). The parent snoozes for a minute
 * once its chunks are enqueued, so it is waiting, not running, when cancelled.
 */
const OPTIONS: Partial<ImportOptions> = { chunkLines: 40, batchRows: 100, pollMs: 60_000, progressEveryMs: 0 }
const LINES = 399
const sku = (line: number) => `s-${line}`
const FEED = ['sku,title,price,currency', ...Array.from({ length: LINES }, (_, k) => `${sku(k + 2)},Imported ${k + 2},1.00,EUR`)].join('\n')

beforeAll(async () => {
  const deps = bed.deps()
  for (const [type, settings] of Object.entries(importTypeSettings)) await configureJobType(deps.db.kysely, type, settings)
  // Short leases: heartbeats (a third of the lease) carry a cancellation to the running chunks within half a second.
  const pool = createWorkerPool({
    db: deps.db.kysely,
    connectionString: bed.url,
    handlers: [createImportProducts(deps, OPTIONS), createImportProductsChunk(deps)],
    concurrency: 6,
    leaseMs: 1_500,
    log: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
    maintenanceIntervals: { rescueMs: 200, promoteMs: 50, electionMs: 200 },
  })
  await pool.start()
  afterAll(() => pool.stop())
})

async function startImport(storeId: string): Promise<Job> {
  async function* body() {
    yield Buffer.from(FEED)
  }
  const { uploadId } = await saveFeedUpload(bed.deps().shop, { storeId, format: 'csv', body: body() })
  return bed.enqueue({ type: 'import.products', storeId, payload: { uploadId } })
}
const chunkRows = (importId: string) =>
  shop().selectFrom('shop.product_import_chunks').select(['chunk_no', 'state', 'job_id', 'upserted']).where('import_id', '=', importId).orderBy('chunk_no').execute()
const importRow = (importId: string) => shop().selectFrom('shop.product_imports').selectAll().where('import_id', '=', importId).executeTakeFirst()
const lockWaits = async () =>
  (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(shop())).rows[0]!.n

describe('cancelling an import.products job', () => {
  it('cancels its waiting chunks, aborts the running ones at once, and ends the import with a report of what was applied', async () => {
    const storeId = 'store-cancel'
    // One product in each of chunks 2 to 5, locked by this test: those chunks block in their upsert.
    const blocked = [81, 121, 161, 201].map(sku)
    await shop().insertInto('shop.products').values(blocked.map((s) => ({ store_id: storeId, sku: s, title: 'Before', price: '9.00', currency: 'EUR', attributes: '{}' }))).execute()
    let release!: () => void
    const held = shop().transaction().execute(async (trx) => {
      await trx.selectFrom('shop.products').select('sku').where('store_id', '=', storeId).where('sku', 'in', blocked).forUpdate().execute()
      await new Promise<void>((r) => (release = r))
    })
    await waitFor(() => release !== undefined)
    let parent: string
    try {
      const job = await startImport(storeId)
      parent = job.id
      // Chunks 0 and 1 applied; 2 to 5 running, each waiting on a locked product (4 is the store's chunk limit); 6 to 9 waiting.
      await waitFor(async () => {
        const chunks = await chunkRows(parent)
        return chunks.length === 10 && chunks[0]!.state === 'done' && chunks[1]!.state === 'done' && (await lockWaits()) === 4
      }, { what: 'chunks 2-5 to block', timeoutMs: 30_000 })
      const chunks = await chunkRows(parent)
      await bed.waitJob(parent, (j) => j.state === 'scheduled')
      for (const c of chunks.slice(2, 6)) expect((await getJob(bed.deps().db.kysely, c.job_id!)).state, `chunk ${c.chunk_no}`).toBe('running')

      expect((await cancelJob(bed.deps().db.kysely, parent, { storeId })).state).toBe('cancelled')
      for (const c of chunks.slice(6)) {
        const job = await getJob(bed.deps().db.kysely, c.job_id!)
        expect([job.state, job.lastError?.code], `chunk ${c.chunk_no}`).toEqual(['cancelled', 'parent_cancelled'])
      }
      // The running chunks stop while the rows they wait for are still locked: their statements were cancelled.
      for (const c of chunks.slice(2, 6)) {
        const job = await bed.waitFinished(c.job_id!, 10_000)
        expect([job.state, job.lastError?.code], `chunk ${c.chunk_no}`).toEqual(['cancelled', 'cancelled'])
      }
      expect(await lockWaits()).toBe(0)
      // The last chunk to stop ended the import: nobody had to read the report first.
      await waitFor(async () => (await importRow(parent))?.state === 'cancelled', { what: 'the import to end cancelled', timeoutMs: 10_000 })
    } finally {
      release()
      await held
    }
    expect(await importRow(parent)).toMatchObject({ state: 'cancelled', rows_total: LINES, rows_done: 79, rows_failed: 0 })
    const chunks = await chunkRows(parent)
    expect(chunks.map((c) => c.state)).toEqual(['done', 'done', ...Array(8).fill('cancelled')])
    expect(chunks.map((c) => c.upserted)).toEqual([39, 40, ...Array(8).fill(null)])

    const report = await getImportReport(bed.deps(), parent, { storeId })
    expect(report).toMatchObject({
      state: 'cancelled',
      total: LINES,
      rowsDone: 79,
      rowsFailed: 0,
      rowsCancelled: 320,
      chunks: 10,
      chunksDone: 2,
      chunksFailed: 0,
      chunksCancelled: 8,
      appliedChunks: [
        { chunkNo: 0, firstLine: 2, lastLine: 40, rows: 39 },
        { chunkNo: 1, firstLine: 41, lastLine: 80, rows: 40 },
      ],
    })
    expect(report!.cancelledChunks.map((c) => [c.chunkNo, c.firstLine, c.lastLine])).toEqual(
      Array.from({ length: 8 }, (_, k) => [k + 2, 40 * (k + 2) + 1, 40 * (k + 2) + 40]),
    )
    expect(await getImportReport(bed.deps(), parent, { storeId: 'store-other' })).toBeNull()

    // What was applied, once; the blocked products as they were; the staged rows gone.
    const products = await shop().selectFrom('shop.products').select(['sku', 'title', 'updated_at']).where('store_id', '=', storeId).execute()
    expect(products.filter((p) => p.title.startsWith('Imported ')).map((p) => p.sku).sort()).toEqual(Array.from({ length: 79 }, (_, k) => sku(k + 2)).sort())
    expect(products.filter((p) => blocked.includes(p.sku)).map((p) => p.title)).toEqual(Array(4).fill('Before'))
    const staged = await shop().selectFrom('shop.product_import_rows').select(sql<number>`count(*)::int`.as('n')).where('import_id', '=', parent).executeTakeFirstOrThrow()
    expect(staged.n).toBe(0)

    // Running a cancelled chunk or the import again applies nothing.
    const again = [chunks[2]!.job_id!, chunks[7]!.job_id!, parent]
    for (const id of again) await retryJob(bed.deps().db.kysely, id)
    const codes = []
    for (const id of again) codes.push((await bed.waitFinished(id)).lastError?.code)
    expect(codes).toEqual(['chunk_closed', 'chunk_closed', 'import_cancelled'])
    const after = await shop().selectFrom('shop.products').select(['sku', 'title', 'updated_at']).where('store_id', '=', storeId).execute()
    expect(after).toHaveLength(products.length)
    expect(new Map(after.map((p) => [p.sku, p.updated_at.getTime()]))).toEqual(new Map(products.map((p) => [p.sku, p.updated_at.getTime()])))
  })

  it('settles an import cancelled while none of its chunks ran when its report is read', async () => {
    const storeId = 'store-cancel-paused'
    await pauseStore(bed.deps().db.kysely, storeId, { type: 'import.products.chunk' })
    const parent = await startImport(storeId)
    await waitFor(async () => (await importRow(parent.id))?.state === 'running', { what: 'the chunks to be enqueued' })
    await bed.waitJob(parent.id, (j) => j.state === 'scheduled')
    expect((await cancelJob(bed.deps().db.kysely, parent.id)).state).toBe('cancelled')
    for (const c of await chunkRows(parent.id)) {
      expect((await getJob(bed.deps().db.kysely, c.job_id!)).lastError?.code).toBe('parent_cancelled')
    }
    expect((await importRow(parent.id))?.state).toBe('running')

    const report = await getImportReport(bed.deps(), parent.id, { storeId })
    expect(report).toMatchObject({ state: 'cancelled', total: LINES, rowsDone: 0, rowsCancelled: LINES, chunksDone: 0, chunksCancelled: 10, appliedChunks: [] })
    expect(await importRow(parent.id)).toMatchObject({ state: 'cancelled', rows_done: 0, rows_failed: 0 })
    // Reading again changes nothing.
    expect(await getImportReport(bed.deps(), parent.id, { storeId })).toEqual(report)
  })
})
