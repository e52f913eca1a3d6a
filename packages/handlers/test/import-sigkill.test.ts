import { configureJobType, enqueue, getJob } from '@backroom/queue-core'
import { waitFor } from '@backroom/queue-core/testing'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ImportReport } from '../src/import/import-products.ts'
import type { ImportTables } from '../src/import/import-tables.ts'
import { startFakeServer, type FakeServer } from '../src/testing/fake-server.ts'
import { useHandlerTestBed } from '../src/testing/run-jobs.ts'
import { productFeed, writeFeed } from './fixtures/product-feed.ts'
import { killImportWorkers, spawnImportWorker, type ImportWorker } from './fixtures/spawn-import-worker.ts'

const bed = useHandlerTestBed()
const ROWS = 20_000
const feed = productFeed(ROWS)
let server: FakeServer
let downloads = 0

beforeAll(async () => {
  server = await startFakeServer(async (_req, res) => {
    downloads++
    // Paced so the first worker is still staging when it is killed.
    await writeFeed(res, feed, ROWS, { linesPerPiece: 250, pauseMs: 15 })
  })
  // Two chunks at a time for the store (each paused 250 ms), so the second worker dies with chunks done and others pending.
  await configureJobType(bed.deps().db.kysely, 'import.products.chunk', { maxRunningPerStore: 2 })
})
afterAll(async () => {
  await killImportWorkers()
  await server.close()
})

const start = async (label: string): Promise<ImportWorker> => {
  const worker = spawnImportWorker(label, {
    DATABASE_URL: bed.url,
    IMPORT_FEED_ALLOWED_ORIGINS: server.url,
    IMPORT_CHUNK_LINES: '1000',
    IMPORT_POLL_MS: '200',
    IMPORT_CHUNK_DELAY_MS: '250',
    WORKER_LEASE_MS: '2000',
    WORKER_RESCUE_MS: '300',
  })
  await worker.message('ready')
  return worker
}

const killed = async (worker: ImportWorker) => {
  worker.kill('SIGKILL')
  expect(await worker.exited).toEqual({ code: null, signal: 'SIGKILL' })
}

describe('import.products with its worker killed (SIGKILL)', () => {
  it('resumes staging and chunking in new workers: every valid SKU once with its last line, counts adding up', { timeout: 180_000 }, async () => {
    const db = bed.deps().shop.withTables<ImportTables>()
    const { job } = await enqueue(bed.deps().db.kysely, {
      type: 'import.products',
      storeId: 'store-k',
      payload: { feedUrl: `${server.url}/feed.csv`, format: 'csv' },
    })
    const importRow = () => db.selectFrom('shop.product_imports').selectAll().where('import_id', '=', job.id).executeTakeFirst()

    // First worker: killed in the middle of staging.
    const first = await start('first')
    await waitFor(async () => ((await importRow())?.staged_through ?? 0) >= 4_000, { timeoutMs: 60_000, what: 'staging under way' })
    await killed(first)
    const stagedAtKill = (await importRow())!.staged_through
    expect(stagedAtKill).toBeLessThan(ROWS)

    // Second worker: the parent is rescued, re-reads the feed past the staged lines, enqueues the chunks; killed mid-chunks.
    const second = await start('second')
    const chunkStates = () => db.selectFrom('shop.product_import_chunks').select(['state']).where('import_id', '=', job.id).execute()
    await waitFor(
      async () => {
        const done = (await chunkStates()).filter((c) => c.state === 'done').length
        return done >= 3
      },
      { timeoutMs: 90_000, what: 'some chunks done' },
    )
    await killed(second)
    const states = await chunkStates()
    expect(states.filter((c) => c.state === 'pending').length).toBeGreaterThan(0)

    // Third worker: rescues the chunks and the parent, and finishes.
    const third = await start('third')
    const done = await bed.waitFinished(job.id, 120_000)
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    expect(downloads).toBeGreaterThanOrEqual(2)
    // Only lost leases on the way: no attempt failed otherwise.
    expect(done.errors.every((e) => e.code === 'lease_expired')).toBe(true)
    expect(done.errors.length).toBeGreaterThanOrEqual(1)

    const { expected } = feed
    const report = done.result as ImportReport
    expect(report).toMatchObject({
      total: expected.total,
      rowsDone: expected.validLines,
      rowsFailed: expected.badLines.length,
      rowsInvalid: expected.badLines.length,
      skus: expected.products.size,
      chunksFailed: 0,
    })
    const errorLines = await db.selectFrom('shop.product_import_errors').select('line_no').where('import_id', '=', job.id).orderBy('line_no').execute()
    expect(errorLines.map((e) => e.line_no)).toEqual(expected.badLines)

    const products = await db.selectFrom('shop.products').select(['sku', 'title', 'price', 'stock']).where('store_id', '=', 'store-k').execute()
    expect(products.length).toBe(expected.products.size)
    const wrong = products.filter((p) => {
      const e = expected.products.get(p.sku)
      return !e || e.title !== p.title || Number(e.price) !== Number(p.price) || e.stock !== p.stock
    })
    expect(wrong).toEqual([])

    // Each chunk was enqueued once: one job per chunk, every one completed.
    const chunks = await db.selectFrom('shop.product_import_chunks').select(['chunk_no', 'state', 'job_id', 'rows']).where('import_id', '=', job.id).execute()
    expect(chunks.every((c) => c.state === 'done')).toBe(true)
    expect(chunks.reduce((n, c) => n + c.rows, 0)).toBe(expected.validLines)
    for (const c of chunks) expect((await getJob(bed.deps().db.kysely, c.job_id!)).state).toBe('completed')
    // Read-only look at the queue: no chunk job beyond those recorded.
    const { rows } = await sql<{ n: number }>`
      select ((select count(*) from jobs where type = 'import.products.chunk') + (select count(*) from job_history where type = 'import.products.chunk'))::int as n
    `.execute(bed.deps().db.kysely)
    expect(rows[0]!.n).toBe(chunks.length)

    third.kill('SIGTERM')
    expect((await third.exited).code).toBe(0)
  })
})
