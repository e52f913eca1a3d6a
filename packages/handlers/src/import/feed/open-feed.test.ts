import type { WorkerPool } from '@backroom/queue-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dnsServerResolver } from '../../lib/host-resolver.ts'
import { startFakeDnsServer, type FakeDnsServer } from '../../testing/fake-dns-server.ts'
import { startFakeServer, type FakeServer } from '../../testing/fake-server.ts'
import { useHandlerTestBed } from '../../testing/run-jobs.ts'
import { createImportProducts, createImportProductsChunk, type ImportOptions } from '../import-products.ts'

/*
 * Feed URLs are the store's to write. With IMPORT_FEED_ALLOWED_ORIGINS=*
 * the store also picks the host, so the URL guard is all that stands
 * between a store and our network. The "public" feed host is a fake server
 * on 127.0.0.1 opened by name in HANDLER_URL_ALLOWLIST (feeds.test:<port>);
 * another fake server on 127.0.0.1 plays an internal service. No URL names
 * an address off this machine (a broken guard would connect to it); the
 * private and metadata ranges are covered by lib/url-guard.test.ts.
 */
const bed = useHandlerTestBed()
const TOKEN = 'feed-token-3f9a'
const OPTIONS: Partial<ImportOptions> = { chunkLines: 40, batchRows: 25, pollMs: 100, feedTimeoutMs: 2_000, feedIdleTimeoutMs: 1_000, progressEveryMs: 0 }
const CSV = ['sku,title,description,price,currency,stock,brand', 'a-1,A one,,1.00,EUR,1,b', 'a-2,A two,,2.00,EUR,2,b'].join('\n')

let dns: FakeDnsServer
let feeds: FakeServer
let internal: FakeServer
let pool: WorkerPool

const port = (server: FakeServer) => new URL(server.url).port
const feedUrl = (path: string) => `http://feeds.test:${port(feeds)}${path}`
const csv = (res: import('node:http').ServerResponse) => void res.writeHead(200, { 'content-type': 'text/csv' }).end(CSV)

async function startImports(env: Record<string, string>): Promise<WorkerPool> {
  const deps = bed.deps(
    { IMPORT_FEED_AUTH_TOKEN: TOKEN, HANDLER_URL_ALLOWLIST: `feeds.test:${port(feeds)}`, ...env },
    { resolveHost: dnsServerResolver([dns.address]) },
  )
  return bed.startWorker([createImportProducts(deps, OPTIONS), createImportProductsChunk(deps)], { concurrency: 4 })
}

async function importFeed(storeId: string, feedUrl: string, maxAttempts = 3) {
  const job = await bed.enqueue({ type: 'import.products', storeId, maxAttempts, payload: { feedUrl, format: 'csv' } })
  return bed.waitFinished(job.id)
}

beforeAll(async () => {
  dns = await startFakeDnsServer((name, type) => {
    if (type === 'AAAA') return name.endsWith('.test') ? [] : null
    return name === 'feeds.test' || name === 'internal.test' ? ['127.0.0.1'] : null
  })
  internal = await startFakeServer((_req, res) => csv(res))
  feeds = await startFakeServer((req, res) => {
    if (req.path === '/catalog.csv') return csv(res)
    if (req.path === '/to-internal.csv') return void res.writeHead(302, { location: `http://127.0.0.1:${port(internal)}/feed.csv` }).end()
    if (req.path === '/flaky.csv') return void res.writeHead(503).end('upstream busy: queue depth 4711')
    res.writeHead(404).end('no such feed')
  })
  pool = await startImports({ IMPORT_FEED_ALLOWED_ORIGINS: '*' })
})
afterAll(async () => {
  await Promise.all([dns.close(), feeds.close(), internal.close()])
})

describe('import feeds under IMPORT_FEED_ALLOWED_ORIGINS=*', () => {
  it('refuses feeds on our own machine or network before connecting, with one error whatever the port', async () => {
    const urls = [
      `http://127.0.0.1:${port(internal)}/feed.csv`,
      // A closed port: must look exactly like the open one.
      'http://127.0.0.1:1/feed.csv',
      `http://internal.test:${port(internal)}/feed.csv`,
      `http://[::ffff:127.0.0.1]:${port(internal)}/feed.csv`,
      `http://[::1]:${port(internal)}/feed.csv`,
      `http://no-such-host.test:${port(internal)}/feed.csv`,
    ]
    const done = await Promise.all(urls.map((url, i) => importFeed(`store-ssrf-${i}`, url)))
    for (const [i, job] of done.entries()) {
      expect([job.state, job.attempt, job.lastError?.code, job.lastError?.message], urls[i]).toEqual(['failed', 1, 'fetch_refused', 'feed: the URL was refused'])
    }
    expect(internal.requests).toEqual([])
  })

  it('downloads a public feed without the auth token, and refuses its redirect into our network', async () => {
    const ok = await importFeed('store-public', feedUrl('/catalog.csv'))
    expect(ok.state, JSON.stringify(ok.lastError)).toBe('completed')
    const seen = feeds.requests.find((r) => r.path === '/catalog.csv')!
    expect(seen.headers.authorization).toBeUndefined()

    const redirected = await importFeed('store-redirect', feedUrl('/to-internal.csv'))
    expect([redirected.state, redirected.attempt, redirected.lastError?.code]).toEqual(['failed', 1, 'fetch_refused'])
    expect(internal.requests).toEqual([])
  })

  it('keeps the host\'s status codes and bodies out of the job error', async () => {
    const missing = await importFeed('store-404', feedUrl('/missing.csv'))
    expect([missing.state, missing.attempt, missing.lastError?.code, missing.lastError?.message]).toEqual([
      'failed',
      1,
      'fetch_failed',
      'feed: the request failed',
    ])
    const flaky = await importFeed('store-503', feedUrl('/flaky.csv'), 1)
    expect([flaky.state, flaky.lastError?.code, flaky.lastError?.message]).toEqual(['failed', 'fetch_failed', 'feed: the request failed'])
  })
})

describe('import feeds from origins listed by name', () => {
  it('send the auth token to that origin', async () => {
    await pool.stop()
    await startImports({ IMPORT_FEED_ALLOWED_ORIGINS: `http://feeds.test:${port(feeds)}` })
    const before = feeds.requests.length
    const done = await importFeed('store-listed', feedUrl('/catalog.csv'))
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    expect(feeds.requests.slice(before).map((r) => r.headers.authorization)).toEqual([`Bearer ${TOKEN}`])
  })
})
