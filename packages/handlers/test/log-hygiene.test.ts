import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHandlers } from '../src/create-handlers.ts'
import { startFakeServer, type FakeServer } from '../src/testing/fake-server.ts'
import { useHandlerTestBed } from '../src/testing/run-jobs.ts'

/**
 * Every handler, run through a real worker at debug level against services
 * that fail (so error paths log too): no credential and no payload text may
 * reach the logs, while the job ids do.
 */
const bed = useHandlerTestBed()
const SECRET = 'sk-live-7b1e0c55-do-not-log'
const MARKER = 'payload-marker-q9z'
const lines: string[] = []
let server: FakeServer

beforeAll(async () => {
  server = await startFakeServer((_req, res) => void res.writeHead(503, { 'content-type': 'text/plain' }).end('unavailable'))
  const env = {
    DEEPL_API_URL: server.url,
    DEEPL_API_KEY: SECRET,
    INVENTORY_API_URL: server.url,
    INVENTORY_API_KEY: SECRET,
    PLUGIN_REGISTRY_URL: server.url,
    PLUGIN_REGISTRY_TOKEN: SECRET,
    MARKETPLACE_API_URL: server.url,
    MARKETPLACE_API_KEY: SECRET,
    IMPORT_FEED_ALLOWED_ORIGINS: server.url,
    IMPORT_FEED_AUTH_TOKEN: SECRET,
  }
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      done()
    },
  })
  const log = pino({ level: 'debug' }, sink)
  await bed.startWorker(createHandlers(bed.deps(env)), { log })
})
afterAll(() => server.close())

describe('handler logs', () => {
  it('carry job ids but never credentials or payload text, on success and failure paths alike', async () => {
    await bed.deps().shop
      .insertInto('shop.products')
      .values({ store_id: 'store-1', sku: `SKU-${MARKER}`, title: `Title ${MARKER}`, price: '9.99', currency: 'EUR', stock: 3, attributes: {} })
      .execute()
    const jobs = await Promise.all([
      bed.enqueue({ type: 'translation.ui', maxAttempts: 1, payload: { sourceLocale: 'en', targetLocales: ['de'], strings: [{ key: 'k', text: `Hello ${MARKER}` }] } }),
      bed.enqueue({ type: 'import.products', maxAttempts: 1, payload: { feedUrl: `${server.url}/feed-${MARKER}.csv`, format: 'csv' } }),
      bed.enqueue({ type: 'sync.inventory', maxAttempts: 1, payload: { skus: [`SKU-${MARKER}`] } }),
      bed.enqueue({ type: 'install.plugin', maxAttempts: 1, payload: { pluginId: `p-${MARKER}`, version: '1.0.0' } }),
      bed.enqueue({ type: 'export.marketplace', maxAttempts: 1, payload: { marketplace: 'acme', format: 'csv' } }),
      bed.enqueue({ type: 'system.canary', maxAttempts: 1, payload: { fail: 'permanent' } }),
    ])
    for (const job of jobs) {
      const done = await bed.waitFinished(job.id)
      expect(done.state, job.type).toBe('failed')
    }
    const text = lines.join('\n')
    expect(lines.length).toBeGreaterThan(0)
    for (const job of jobs) expect(text, `no log line names job ${job.id}`).toContain(`"jobId":"${job.id}"`)
    expect(text).not.toContain(SECRET)
    expect(text).not.toContain(MARKER)
    expect(text.toLowerCase()).not.toContain('authorization')
  })
})
