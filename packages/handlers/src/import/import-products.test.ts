import { gzipSync } from 'node:zlib'
import { configureJobType, type WorkerPool } from '@backroom/queue-core'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeServer, type FakeServer } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { saveFeedUpload } from './feed/feed-uploads.ts'
import { MAX_RECORD_BYTES } from './feed/read-feed-records.ts'
import { createImportProducts, createImportProductsChunk, importTypeSettings, type ImportOptions, type ImportReport } from './import-products.ts'
import type { ImportTables } from './import-tables.ts'

const bed = useHandlerTestBed()
let server: FakeServer
let pool: WorkerPool
/** Requests per path: how often the fake feed host was asked. */
const hits = new Map<string, number>()

/** Small chunks and batches so a few hundred rows exercise every step; short timeouts for the failure paths. */
const OPTIONS: Partial<ImportOptions> = { chunkLines: 40, batchRows: 25, pollMs: 100, feedTimeoutMs: 800, feedIdleTimeoutMs: 400, progressEveryMs: 0, maxFeedBytes: 4 * 1024 * 1024 }

const HEADER = 'sku,title,description,price,currency,stock,brand'
const good = (i: number) => `sku-${i},Product ${i},"Desc, ${i}",${i}.50,eur,${i},b${i % 3}`

/**
 * 200 products, 3 rejected lines and a second line for sku-7 at the end:
 * data lines 2..205 of the file.
 */
const CATALOG = [
  HEADER,
  ...Array.from({ length: 200 }, (_, k) => good(k + 1)),
  'bad-price,Broken,,abc,EUR,1,x',
  'no-title,,,1.00,EUR,1,x',
  'short,Short row,,1.00',
  'sku-7,Product 7 (v2),,70.00,USD,,b9',
].join('\n')

const SMALL = [HEADER, good(1), good(2), good(3)].join('\n')
const GZIPPED_SMALL = gzipSync(SMALL)
/** 16 MiB of empty lines after a valid row, in about 16 KB on the wire. */
const GZIP_BOMB = gzipSync(Buffer.concat([Buffer.from(`${HEADER}\n${good(1)}\n`), Buffer.alloc(16 * 1024 * 1024, '\n')]), { level: 9 })

beforeAll(async () => {
  server = await startFakeServer(async (req, res) => {
    const n = (hits.get(req.path) ?? 0) + 1
    hits.set(req.path, n)
    const csv = (body: string) => void res.writeHead(200, { 'content-type': 'text/csv' }).end(body)
    if (req.path === '/catalog.csv') return csv(CATALOG)
    if (req.path === '/throttled.csv') return n === 1 ? void res.writeHead(429, { 'retry-after': '1' }).end() : csv(SMALL)
    if (req.path === '/flaky.csv') return n === 1 ? void res.writeHead(503).end('busy') : csv(SMALL)
    if (req.path === '/bad-header.csv') return csv('sku,name,cost\na,A,1\n')
    const gzipped = (body: Buffer) => void res.writeHead(200, { 'content-type': 'text/csv', 'content-encoding': 'gzip' }).end(body)
    if (req.path === '/gzipped.csv') return gzipped(GZIPPED_SMALL)
    if (req.path === '/bomb.csv') return gzipped(GZIP_BOMB)
    if (req.path === '/slow-headers.csv') {
      await new Promise((r) => setTimeout(r, 1_500))
      return csv(SMALL)
    }
    if (req.path === '/stalled.csv') {
      res.writeHead(200, { 'content-type': 'text/csv' })
      res.write(`${HEADER}\n${good(1)}\n`)
      await new Promise((r) => setTimeout(r, 1_500))
      return void res.end(`${good(2)}\n`)
    }
    res.writeHead(404).end()
  })
  const deps = bed.deps({ IMPORT_FEED_ALLOWED_ORIGINS: server.url })
  for (const [type, settings] of Object.entries(importTypeSettings)) await configureJobType(deps.db.kysely, type, settings)
  pool = await bed.startWorker([createImportProducts(deps, OPTIONS), createImportProductsChunk(deps)], { concurrency: 4 })
})
afterAll(() => server.close())

const shop = () => bed.deps().shop.withTables<ImportTables>()
const products = (storeId: string) =>
  shop().selectFrom('shop.products').selectAll().where('store_id', '=', storeId).orderBy('sku').execute()

describe('import.products from a CSV feed URL', () => {
  it('upserts every valid row by SKU across parallel chunks, the later line of a SKU winning, and reports bad lines', async () => {
    const db = shop()
    // An existing product of the store is updated; another store's same SKU is left alone.
    await db.insertInto('shop.products').values([
      { store_id: 'store-1', sku: 'sku-1', title: 'Old', price: '1.00', currency: 'EUR', stock: 5, attributes: '{}' },
      { store_id: 'store-2', sku: 'sku-1', title: 'Other store', price: '9.00', currency: 'EUR', stock: 1, attributes: '{}' },
    ]).execute()
    const job = await bed.enqueue({ type: 'import.products', payload: { feedUrl: `${server.url}/catalog.csv`, format: 'csv' } })
    const done = await bed.waitFinished(job.id, 60_000)
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    const report = done.result as ImportReport
    expect(report).toMatchObject({ total: 204, rowsDone: 201, rowsFailed: 3, rowsInvalid: 3, skus: 200, chunks: 6, chunksFailed: 0, errorsTruncated: false })
    expect(report.errors).toEqual([
      { line: 202, sku: 'bad-price', code: 'invalid_field', reason: expect.stringMatching(/^price:/) },
      { line: 203, sku: 'no-title', code: 'invalid_field', reason: 'title: required' },
      { line: 204, sku: 'short', code: 'malformed_row', reason: 'csv: the row has 4 fields, the header 7' },
    ])
    expect(done.progress).toEqual({ phase: 'done', rowsDone: 201, rowsFailed: 3, total: 204 })
    // Waiting on chunks snoozed: no attempt spent, no error recorded.
    expect(done.attempt).toBe(1)
    expect(done.errors).toEqual([])

    const rows = await products('store-1')
    expect(rows).toHaveLength(200)
    const bySku = new Map(rows.map((r) => [r.sku, r]))
    expect(bySku.get('sku-1')).toMatchObject({ title: 'Product 1', description: 'Desc, 1', price: '1.50', currency: 'EUR', stock: 1, attributes: { brand: 'b1' } })
    // The later line wins whole: the earlier one is never applied, so its stock is not either.
    expect(bySku.get('sku-7')).toMatchObject({ title: 'Product 7 (v2)', price: '70.00', currency: 'USD', stock: null, attributes: { brand: 'b9' } })
    expect(await products('store-2')).toMatchObject([{ sku: 'sku-1', title: 'Other store' }])

    const chunks = await db.selectFrom('shop.product_import_chunks').select(['state', 'rows', 'job_id']).where('import_id', '=', job.id).execute()
    expect(chunks.map((c) => c.state)).toEqual(Array(6).fill('done'))
    expect(chunks.reduce((n, c) => n + c.rows, 0)).toBe(201)
    expect(new Set(chunks.map((c) => c.job_id)).size).toBe(6)
    const staged = await db.selectFrom('shop.product_import_rows').select(sql<number>`count(*)::int`.as('n')).where('import_id', '=', job.id).executeTakeFirstOrThrow()
    expect(staged.n).toBe(0)
  })

  it('snoozes on 429 for Retry-After without spending an attempt', async () => {
    const job = await bed.enqueue({ type: 'import.products', storeId: 'store-429', payload: { feedUrl: `${server.url}/throttled.csv`, format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(hits.get('/throttled.csv')).toBe(2)
    expect(done.attempt).toBe(1)
    expect(done.errors).toEqual([])
    expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
    expect(await products('store-429')).toHaveLength(3)
  })

  it('retries a 5xx with backoff through the queue', async () => {
    const job = await bed.enqueue({ type: 'import.products', storeId: 'store-503', payload: { feedUrl: `${server.url}/flaky.csv`, format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_server_error'])
    expect(await products('store-503')).toHaveLength(3)
  })

  it('fails a slow feed with a retryable timeout: headers too late, or a body that stalls', async () => {
    for (const path of ['/slow-headers.csv', '/stalled.csv']) {
      const job = await bed.enqueue({ type: 'import.products', storeId: 'store-slow', payload: { feedUrl: `${server.url}${path}`, format: 'csv' }, maxAttempts: 1 })
      const done = await bed.waitFinished(job.id)
      expect(done.state, path).toBe('failed')
      expect(done.lastError?.code, path).toBe('upstream_timeout')
    }
  })

  it('reads a gzip-encoded feed, and fails one that inflates past maxFeedBytes as soon as it does', async () => {
    const ok = await bed.enqueue({ type: 'import.products', storeId: 'store-gzip', payload: { feedUrl: `${server.url}/gzipped.csv`, format: 'csv' } })
    const okDone = await bed.waitFinished(ok.id)
    expect(okDone.state, JSON.stringify(okDone.lastError)).toBe('completed')
    expect(await products('store-gzip')).toHaveLength(3)

    const bomb = await bed.enqueue({ type: 'import.products', storeId: 'store-bomb', payload: { feedUrl: `${server.url}/bomb.csv`, format: 'csv' } })
    const done = await bed.waitFinished(bomb.id)
    expect([done.state, done.attempt, done.lastError?.code]).toEqual(['failed', 1, 'feed_too_large'])
    expect(done.lastError?.message).toContain(String(4 * 1024 * 1024))
  })

  it('fails at once, without retries, on a bad payload, a refused origin, a missing feed or an unusable header', async () => {
    const cases = [
      [{ feedUrl: 'ftp://feeds.example.com/a.csv', format: 'csv' }, 'validation_failed'],
      [{ feedUrl: `${server.url}/catalog.csv`, format: 'xml' }, 'validation_failed'],
      [{ uploadId: '1', storeId: 'store-2' }, 'validation_failed'],
      [{ feedUrl: 'https://elsewhere.example.com/a.csv', format: 'csv' }, 'feed_url_not_allowed'],
      [{ feedUrl: `${server.url}/missing.csv`, format: 'csv' }, 'upstream_rejected'],
      [{ feedUrl: `${server.url}/bad-header.csv`, format: 'csv' }, 'feed_invalid_header'],
    ] as const
    const jobs = await Promise.all(cases.map(([payload]) => bed.enqueue({ type: 'import.products', storeId: 'store-bad', payload })))
    for (const [i, job] of jobs.entries()) {
      const done = await bed.waitFinished(job.id)
      expect([done.state, done.attempt, done.lastError?.code], JSON.stringify(cases[i]![0])).toEqual(['failed', 1, cases[i]![1]])
    }
    const header = await bed.waitFinished(jobs[5]!.id)
    expect(header.lastError?.message).toMatch(/missing column\(s\) title, price, currency/)
  })
})

describe('import.products from an upload (JSON Lines)', () => {
  it('reads the stored parts back in order and imports them; another store cannot use the upload', async () => {
    const lines = [
      ...Array.from({ length: 30 }, (_, k) => JSON.stringify({ sku: `j-${k}`, title: `J ${k}`, price: k + 0.25, currency: 'GBP', stock: k, colour: 'red' })),
      '{"sku": "broken",',
      '["not", "an", "object"]',
      JSON.stringify({ sku: 'bad-currency', title: 'X', price: 1, currency: 'EURO' }),
    ]
    const text = `${lines.join('\n')}\n`
    // Odd piece sizes and 100-byte parts: lines cross piece and part boundaries.
    async function* body() {
      for (let i = 0; i < text.length; i += 37) yield Buffer.from(text.slice(i, i + 37))
    }
    const { uploadId } = await saveFeedUpload(bed.deps().shop, { storeId: 'store-3', format: 'jsonl', body: body(), partBytes: 100 })
    const parts = await shop().selectFrom('shop.feed_upload_parts').select('part_no').where('upload_id', '=', uploadId).execute()
    expect(parts.length).toBe(Math.ceil(Buffer.byteLength(text) / 100))

    const job = await bed.enqueue({ type: 'import.products', storeId: 'store-3', payload: { uploadId } })
    const done = await bed.waitFinished(job.id)
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    expect(done.result).toMatchObject({ format: 'jsonl', total: 33, rowsDone: 30, rowsFailed: 3 })
    expect((done.result as ImportReport).errors.map((e) => [e.line, e.reason.split(':')[0]])).toEqual([
      [31, 'jsonl'],
      [32, 'jsonl'],
      [33, 'currency'],
    ])
    const rows = await products('store-3')
    expect(rows).toHaveLength(30)
    expect(rows.find((r) => r.sku === 'j-3')).toMatchObject({ title: 'J 3', price: '3.25', currency: 'GBP', stock: 3, attributes: { colour: 'red' } })

    const foreign = await bed.enqueue({ type: 'import.products', storeId: 'store-4', payload: { uploadId } })
    expect((await bed.waitFinished(foreign.id)).lastError?.code).toBe('upload_not_found')
  })
})

describe('import.products with hostile and broken lines', () => {
  /** Uploads `bytes` for `storeId`, imports them with one attempt, and returns the finished job. */
  async function importUpload(storeId: string, format: 'csv' | 'jsonl', bytes: Buffer) {
    async function* body() {
      for (let i = 0; i < bytes.length; i += 65_536) yield bytes.subarray(i, i + 65_536)
    }
    const { uploadId } = await saveFeedUpload(bed.deps().shop, { storeId, format, body: body() })
    const job = await bed.enqueue({ type: 'import.products', storeId, maxAttempts: 1, payload: { uploadId } })
    return bed.waitFinished(job.id)
  }

  it('records each bad CSV line as an error row, its text made storable, and imports the rest', async () => {
    const feed = Buffer.concat([
      Buffer.from('\ufeffsku,title,description,price,currency,stock\r\n'),
      Buffer.from('h-1,One,,1.00,EUR,1\r\n'),
      Buffer.from('h-\u0000nul,Nul,,1.00,EUR,1\r\n'),
      Buffer.from('h-latin1,Caf'), Buffer.from([0xe9]), Buffer.from(',,1.00,EUR,1\r\n'),
      Buffer.from(`h-big,"${'x'.repeat(MAX_RECORD_BYTES)}",,1.00,EUR,1\r\n`),
      Buffer.from('h-2,Two,,2.00,EUR,2\r\n'),
      Buffer.from('h-3,Three,,3.0'),
    ])
    const done = await importUpload('store-hostile-csv', 'csv', feed)
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    const report = done.result as ImportReport
    expect(report).toMatchObject({ total: 6, rowsDone: 2, rowsFailed: 4, rowsInvalid: 4 })
    expect(report.errors).toEqual([
      { line: 3, sku: 'h-\ufffdnul', code: 'invalid_character', reason: expect.stringMatching(/^sku:/) },
      { line: 4, sku: 'h-latin1', code: 'invalid_encoding', reason: expect.stringMatching(/UTF-8/) },
      { line: 5, sku: null, code: 'row_too_large', reason: `csv: the row is longer than ${MAX_RECORD_BYTES} bytes` },
      { line: 7, sku: 'h-3', code: 'malformed_row', reason: 'csv: the row has 4 fields, the header 6' },
    ])
    expect((await products('store-hostile-csv')).map((p) => [p.sku, p.title])).toEqual([
      ['h-1', 'One'],
      ['h-2', 'Two'],
    ])
  })

  it('records each bad JSON line as an error row, its text made storable, and imports the rest', async () => {
    const depth = 50_000
    const feed = Buffer.concat([
      Buffer.from('{"sku":"h-4","title":"Four","price":4,"currency":"EUR"}\r\n'),
      // A lone surrogate in an attribute made jsonb refuse the whole batch.
      Buffer.from('{"sku":"h-5","title":"T","price":1,"currency":"EUR","colour":"\\ud800"}\n'),
      Buffer.from('{"sku":"h-\\u0000","title":"T","price":1,"currency":"EUR"}\n'),
      Buffer.from(`{"sku":"h-7","title":"T","price":1,"currency":"EUR","attributes":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}\n`),
      Buffer.from('{"sku":"h-8","title":"Caf'), Buffer.from([0xff]), Buffer.from('","price":1,"currency":"EUR"}\n'),
      Buffer.from('{"sku":"h-6","title":"Six","price":6,"currency":"EUR"}\n'),
      Buffer.from('{"sku":"h-9","title":"Ni'),
    ])
    const done = await importUpload('store-hostile-jsonl', 'jsonl', feed)
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    const report = done.result as ImportReport
    expect(report).toMatchObject({ total: 7, rowsDone: 2, rowsFailed: 5, rowsInvalid: 5 })
    expect(report.errors.map((e) => [e.line, e.sku, e.code])).toEqual([
      [2, 'h-5', 'invalid_character'],
      [3, 'h-\ufffd', 'invalid_character'],
      [4, 'h-7', 'field_too_large'],
      [5, 'h-8', 'invalid_encoding'],
      [7, null, 'malformed_row'],
    ])
    expect((await products('store-hostile-jsonl')).map((p) => [p.sku, p.title])).toEqual([
      ['h-4', 'Four'],
      ['h-6', 'Six'],
    ])
  })
})

describe('import.products without configuration', () => {
  it('fails URL feeds with not_configured, naming the variable', async () => {
    await pool.stop()
    const deps = bed.deps({})
    await bed.startWorker([createImportProducts(deps, OPTIONS), createImportProductsChunk(deps)], { concurrency: 2 })
    const job = await bed.enqueue({ type: 'import.products', payload: { feedUrl: `${server.url}/catalog.csv`, format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('not_configured')
    expect(done.lastError?.message).toMatch(/IMPORT_FEED_ALLOWED_ORIGINS/)
  })
})
