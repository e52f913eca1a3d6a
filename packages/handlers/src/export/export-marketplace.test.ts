import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { getRateLimit, setRateLimit, type WorkerPool } from '@backroom/queue-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeServer, type FakeServer, type SeenRequest } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { createExportMarketplace } from './export-marketplace.ts'
import type { Insertable } from 'kysely'
import type { ProductTable } from '../lib/shop-database.ts'
import type { ExportTables } from './marketplace-exports.ts'

const bed = useHandlerTestBed()
const API_KEY = 'test-secret-key'
const TYPE = 'export.marketplace'
let server: FakeServer
let pool: WorkerPool
/** PUTs seen per feed path: how the fake marketplace decides its answer. */
const putsByPath = new Map<string, number>()

/** One expected feed row: what the product's fields must read as once parsed back. */
interface Expected {
  readonly id: string
  readonly title: string
  readonly description: string
  readonly price: string
  readonly availability: string
}

/** 300 products full of what breaks feeds: separators, quotes, markup, line breaks, control characters (not NUL: PostgreSQL text cannot hold it), unicode. */
const BIG_STORE = 'store-big'
const bigCatalogue: Array<{ row: Insertable<ProductTable>; expected: Expected }> = Array.from({ length: 300 }, (_, i) => {
  const sku = `SKU-${String(i).padStart(4, '0')}`
  const dirty = [
    ['plain text', 'plain text'],
    ['commas, "quotes" and ""doubles""', 'commas, "quotes" and ""doubles""'],
    ['markup <b>bold</b> & &amp; \'apos\'', 'markup <b>bold</b> & &amp; \'apos\''],
    ['lines\nand\r\nwindows\rbreaks', 'lines\nand\r\nwindows\rbreaks'],
    ['ctrl\u0001soh\u0007bel\u000Bvt\u001Fus\uFFFEend', 'ctrlsohbelvtusend'],
    ['unicode: Tasse à café ☕ 日本語 😀 Ω', 'unicode: Tasse à café ☕ 日本語 😀 Ω'],
  ] as const
  const [description, cleanDescription] = dirty[i % dirty.length]!
  const stock = i % 3 === 0 ? 0 : i % 3 === 1 ? 5 : null
  const price = `${i}.${String(i % 100).padStart(2, '0')}`
  return {
    row: { store_id: BIG_STORE, sku, title: `Product ${i}, "n°${i}" <${i}>`, description, price, currency: 'EUR', stock, attributes: {} },
    expected: {
      id: sku,
      title: `Product ${i}, "n°${i}" <${i}>`,
      description: cleanDescription,
      price: `${price} EUR`,
      availability: stock === 0 ? 'out of stock' : 'in stock',
    },
  }
})
const SMALL_STORE = 'store-small'

beforeAll(async () => {
  server = await startFakeServer(async (req, res) => {
    const match = /^\/v1\/marketplaces\/([^/]+)\/stores\/([^/]+)\/feeds\/([^/]+)$/.exec(req.path)
    if (req.method !== 'PUT' || !match) return void res.writeHead(404).end()
    if (req.headers.authorization !== `Bearer ${API_KEY}`) return void res.writeHead(401).end()
    // The marketplace checks the body against the announced digest, as a real one would.
    if (req.headers['x-content-sha256'] !== sha256(req.body)) return void res.writeHead(400).end('{"error":"digest mismatch"}')
    const n = (putsByPath.get(req.path) ?? 0) + 1
    putsByPath.set(req.path, n)
    const accepted = () =>
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ feedId: `feed-${match[3]}`, status: 'accepted' }))
    switch (match[1]) {
      case 'throttled':
        return void (n === 1 ? res.writeHead(429, { 'retry-after': '1' }).end() : accepted())
      case 'flaky':
        return void (n === 1 ? res.writeHead(503).end('busy') : accepted())
      case 'rejecting':
        return void res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"unknown category"}')
      case 'slow':
        if (n === 1) await new Promise((r) => setTimeout(r, 2_500))
        return void accepted()
      case 'garbled':
        return void (n === 1 ? res.writeHead(201, { 'content-type': 'application/json' }).end('{"feedId":') : accepted())
      default:
        return void accepted()
    }
  })
  const deps = bed.deps({ MARKETPLACE_API_URL: `${server.url}/`, MARKETPLACE_API_KEY: API_KEY, MARKETPLACE_TIMEOUT_MS: '1000' })
  await deps.shop.insertInto('shop.stores').values({ store_id: BIG_STORE, name: 'Big & Co' }).execute()
  await deps.shop.insertInto('shop.products').values(bigCatalogue.map((p) => p.row)).execute()
  await deps.shop
    .insertInto('shop.products')
    .values(['A', 'B', 'C'].map((sku) => ({ store_id: SMALL_STORE, sku, title: `Item ${sku}`, price: '1.00', currency: 'USD', stock: 1, attributes: {} })))
    .execute()
  // Batches of 128: the 300 products take three keyset pages.
  pool = await bed.startWorker([createExportMarketplace(deps, { batchSize: 128 })])
})
afterAll(() => server.close())

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex')
const feedPath = (marketplace: string, storeId: string, exportId: string) =>
  `/v1/marketplaces/${marketplace}/stores/${storeId}/feeds/${exportId}`
const putsTo = (path: string): SeenRequest[] => server.requests.filter((r) => r.path === path)
const exportRow = (id: string) =>
  bed.deps().shop.withTables<ExportTables>().selectFrom('shop.marketplace_exports').selectAll().where('id', '=', id).executeTakeFirstOrThrow()

describe('export.marketplace through a real worker', () => {
  it('uploads a CSV feed of every product, streamed with its digest, and records the export', async () => {
    // An operator's rate for the key is kept as set.
    await setRateLimit(bed.deps().db.kysely, `marketplace:shop:${BIG_STORE}`, { perSecond: 7 })
    const job = await bed.enqueue({ type: TYPE, storeId: BIG_STORE, payload: { marketplace: 'shop', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')

    const [put, ...others] = putsTo(feedPath('shop', BIG_STORE, job.id))
    expect(others).toEqual([])
    expect(put!.headers['content-type']).toBe('text/csv; charset=utf-8')
    expect(put!.headers['idempotency-key']).toBe(`backroom:${TYPE}:${job.id}:upload`)
    expect(put!.headers['content-length']).toBe(String(Buffer.byteLength(put!.body)))
    const records = parseCsv(put!.body)
    expect(records[0]).toEqual(['id', 'title', 'description', 'price', 'availability'])
    expect(records.slice(1).map(([id, title, description, price, availability]) => ({ id, title, description, price, availability }))).toEqual(
      bigCatalogue.map((p) => p.expected),
    )

    const row = await exportRow(job.id)
    expect(row).toMatchObject({ state: 'uploaded', store_id: BIG_STORE, marketplace: 'shop', format: 'csv', product_count: 300 })
    expect(row).toMatchObject({ bytes: String(Buffer.byteLength(put!.body)), sha256: sha256(put!.body), remote_feed_id: `feed-${job.id}` })
    expect(row.uploaded_at).toBeInstanceOf(Date)
    expect(done.result).toMatchObject({ state: 'uploaded', productCount: 300, feedId: `feed-${job.id}`, sha256: sha256(put!.body) })
    expect((await getRateLimit(bed.deps().db.kysely, `marketplace:shop:${BIG_STORE}`))?.perSecond).toBe(7)
    expect((await readdir(tmpdir())).filter((name) => name.startsWith('backroom-feed-'))).toEqual([])
  })

  it('uploads an RSS 2.0 Merchant XML feed that parses back to the products', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: BIG_STORE, payload: { marketplace: 'shop', format: 'xml' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    const put = putsTo(feedPath('shop', BIG_STORE, job.id))[0]!
    expect(put.headers['content-type']).toBe('application/xml')
    const feed = parseFeedXml(put.body)
    expect(feed.channelTitle).toBe('Big & Co')
    expect(feed.items).toEqual(
      bigCatalogue.map(({ expected: e }) => ({ 'g:id': e.id, title: e.title, description: e.description, 'g:price': e.price, 'g:availability': e.availability })),
    )
  })

  it('snoozes on 429 for Retry-After without spending an attempt, and halves the key rate', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'throttled', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(1)
    expect(done.errors).toEqual([])
    expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
    const puts = putsTo(feedPath('throttled', SMALL_STORE, job.id))
    expect(puts).toHaveLength(2)
    // The key had no rate: it got the default (2/s), and the 429 cut it (recovering slowly since).
    const rate = await getRateLimit(bed.deps().db.kysely, `marketplace:throttled:${SMALL_STORE}`)
    expect(rate?.perSecond).toBe(2)
    expect(rate!.currentPerSecond).toBeLessThan(1.5)
  })

  it('retries a 5xx through the queue and resends the same feed under the same idempotency key', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'flaky', format: 'xml' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_server_error'])
    const [first, second] = putsTo(feedPath('flaky', SMALL_STORE, job.id))
    expect(second!.headers['idempotency-key']).toBe(first!.headers['idempotency-key'])
    expect(second!.body).toBe(first!.body)
  })

  it('retries an upload that times out', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'slow', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_timeout'])
    expect((await exportRow(job.id)).state).toBe('uploaded')
  })

  it('retries a malformed answer, which may hide an accepted upload, under the same idempotency key', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'garbled', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_malformed_response'])
    const keys = putsTo(feedPath('garbled', SMALL_STORE, job.id)).map((r) => r.headers['idempotency-key'])
    expect(keys).toEqual([`backroom:${TYPE}:${job.id}:upload`, `backroom:${TYPE}:${job.id}:upload`])
  })

  it('fails at once, without retries, when the marketplace rejects the feed (400)', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'rejecting', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('upstream_rejected')
    // The row keeps what was built; the job says why it failed.
    expect(await exportRow(job.id)).toMatchObject({ state: 'building', product_count: 3, remote_feed_id: null })
  })

  it('sends nothing when the export row already says uploaded (a run after a crash)', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'shop', format: 'csv' }, delayMs: 1_000 })
    await bed
      .deps()
      .shop.withTables<ExportTables>()
      .insertInto('shop.marketplace_exports')
      .values({
        id: job.id,
        store_id: SMALL_STORE,
        marketplace: 'shop',
        format: 'csv',
        state: 'uploaded',
        product_count: 3,
        bytes: 120,
        sha256: 'a'.repeat(64),
        remote_feed_id: 'feed-earlier',
        uploaded_at: new Date(),
      })
      .execute()
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.result).toMatchObject({ state: 'uploaded', feedId: 'feed-earlier', productCount: 3 })
    expect(putsTo(feedPath('shop', SMALL_STORE, job.id))).toEqual([])
  })

  it('completes without uploading when the catalogue is empty', async () => {
    const job = await bed.enqueue({ type: TYPE, storeId: 'store-empty', payload: { marketplace: 'shop', format: 'xml' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.result).toMatchObject({ state: 'empty', productCount: 0, feedId: null })
    expect(await exportRow(job.id)).toMatchObject({ state: 'empty', product_count: 0 })
    expect(server.requests.filter((r) => r.path.includes('/stores/store-empty/'))).toEqual([])
  })

  it('fails bad payloads at once with a validation error', async () => {
    for (const payload of [
      { marketplace: 'Not Valid!', format: 'csv' },
      { marketplace: 'shop', format: 'pdf' },
      { marketplace: 'shop', format: 'csv', storeId: 'someone-else' },
      {},
    ]) {
      const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload })
      const done = await bed.waitFinished(job.id)
      expect(done.state, JSON.stringify(payload)).toBe('failed')
      expect(done.attempt).toBe(1)
      expect(done.lastError?.code).toBe('validation_failed')
    }
  })

  // Last: it replaces the worker with one built without the marketplace URL.
  it('fails with not_configured, naming the variable, when MARKETPLACE_API_URL is missing', async () => {
    await pool.stop()
    await bed.startWorker([createExportMarketplace(bed.deps({ MARKETPLACE_API_KEY: API_KEY }))])
    const job = await bed.enqueue({ type: TYPE, storeId: SMALL_STORE, payload: { marketplace: 'shop', format: 'csv' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('not_configured')
    expect(done.lastError?.message).toContain('MARKETPLACE_API_URL')
  })
})

/** A strict RFC 4180 reader: CRLF record ends, quoted fields with doubled quotes; anything else throws. */
function parseCsv(text: string): string[][] {
  const records: string[][] = []
  let record: string[] = []
  let field = ''
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === '"' && field === '') {
      // A quoted field runs to the next quote not doubled.
      for (i++; ; i++) {
        if (i >= text.length) throw new Error('unterminated quoted field')
        if (text[i] === '"' && text[i + 1] === '"') field += text[i++]
        else if (text[i] === '"') break
        else field += text[i]
      }
      i++
      if (text[i] !== ',' && text[i] !== '\r') throw new Error(`text after a closing quote at ${i}`)
      continue
    }
    if (c === ',') {
      record.push(field)
      field = ''
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field)
      records.push(record)
      record = []
      field = ''
      i++
    } else if (c === '"' || c === '\r' || c === '\n') throw new Error(`unquoted ${JSON.stringify(c)} at ${i}`)
    else field += c
    i++
  }
  if (field !== '' || record.length > 0) throw new Error('last record not terminated by CRLF')
  return records
}

/**
 * Reads the XML feed back, checking what a real parser would reject: the
 * declaration, balanced tags, the g: namespace, only known entity references,
 * only characters XML 1.0 allows, and no raw CR (a parser would fold it).
 */
function parseFeedXml(text: string): { channelTitle: string; items: Array<Record<string, string>> } {
  const declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
  if (!text.startsWith(declaration)) throw new Error('missing XML declaration')
  if (/[^\t\n\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u.test(text)) throw new Error('character not allowed in XML 1.0 (or raw CR)')
  const entities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
  const decode = (raw: string) =>
    raw.replace(/&([^;&<\s]*)(;?)/g, (whole, name: string, semicolon: string) => {
      if (!semicolon) throw new Error('bare & in text')
      if (name in entities) return entities[name]!
      if (/^#\d+$/.test(name)) return String.fromCodePoint(Number(name.slice(1)))
      if (/^#x[0-9a-fA-F]+$/.test(name)) return String.fromCodePoint(parseInt(name.slice(2), 16))
      throw new Error(`unknown entity ${whole}`)
    })
  const stack: string[] = []
  const items: Array<Record<string, string>> = []
  let item: Record<string, string> | null = null
  let channelTitle = ''
  let textBuffer = ''
  const tokens = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*>|([^<]+)|(<)/gy
  tokens.lastIndex = declaration.length
  // The alternatives cover every character, so the sticky scan reaches the end or throws.
  for (let m = tokens.exec(text); m; m = tokens.exec(text)) {
    const [, closing, name, attrs, chars, stray] = m
    if (stray) throw new Error(`stray < at ${m.index}`)
    if (chars !== undefined) {
      textBuffer += decode(chars)
      continue
    }
    if (!closing) {
      if (stack.length === 0 && (name !== 'rss' || !attrs!.includes('xmlns:g="http://base.google.com/ns/1.0"'))) {
        throw new Error('root must be <rss> declaring the g: namespace')
      }
      stack.push(name!)
      if (name === 'item') item = {}
      textBuffer = ''
      continue
    }
    if (stack.pop() !== name) throw new Error(`mismatched </${name}>`)
    const parent = stack[stack.length - 1]
    if (name === 'item') {
      items.push(item!)
      item = null
    }
    else if (parent === 'item') item![name!] = textBuffer
    else if (parent === 'channel' && name === 'title') channelTitle = textBuffer
    textBuffer = ''
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('><')}>`)
  return { channelTitle, items }
}
