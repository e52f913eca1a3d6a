import { configureJobType, enqueue, getJob } from '@backroom/queue-core'
import type { ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InventoryDb, InventoryTables } from './inventory-syncs.ts'
import { createSyncInventory, type SyncInventoryResult } from './sync-inventory.ts'
import { syncInventorySpec } from './sync-inventory-spec.ts'
import { syncInventoryTypeSettings, SYNC_INVENTORY_TYPE } from './sync-inventory-type-settings.ts'
import { startFakeServer, type FakeServer, type SeenRequest } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'

const bed = useHandlerTestBed()
const API_KEY = 'test-inventory-key'

/** One level as the fake inventory API holds it. */
interface SourceLevel {
  readonly sku: string
  readonly available: number
  readonly updatedAt: string
}

/** The fake API's levels by store, and how many requests each store got. */
const source = new Map<string, SourceLevel[]>()
const requestsByStore = new Map<string, number>()
let server: FakeServer
let shop: InventoryDb

/**
 * The inventory-levels protocol (inventory-api.ts), with misbehaving stores:
 * `throttled` (429 once), `flaky` (503 once), `truncated`, `wrong-shape`,
 * `looping` (cursor never ends) and `slow`.
 */
async function inventoryApi(req: SeenRequest, res: ServerResponse): Promise<void> {
  const url = new URL(req.path, 'http://fake')
  const match = /^\/v1\/stores\/([^/]+)\/inventory_levels$/.exec(url.pathname)
  if (req.method !== 'GET' || !match) return void res.writeHead(404).end()
  if (req.headers.authorization !== `Bearer ${API_KEY}`) return void res.writeHead(401).end()
  const storeId = decodeURIComponent(match[1]!)
  const n = (requestsByStore.get(storeId) ?? 0) + 1
  requestsByStore.set(storeId, n)
  const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  if (storeId === 'throttled' && n === 1) return void res.writeHead(429, { 'retry-after': '1' }).end()
  if (storeId === 'flaky' && n === 1) return void res.writeHead(503).end('busy')
  if (storeId === 'truncated') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"levels":[{"sku"')
  if (storeId === 'wrong-shape') return void json({ levels: [{ sku: 'a', available: 'many', updatedAt: '2024-01-01T00:00:00Z' }], nextCursor: null })
  if (storeId === 'looping') return void json({ levels: [], nextCursor: 'again' })
  if (storeId === 'slow') await sleep(1_500)
  const skus = url.searchParams.get('skus')?.split(',')
  const all = (source.get(storeId) ?? []).filter((l) => !skus || skus.includes(l.sku))
  const limit = Number(url.searchParams.get('limit'))
  const cursor = url.searchParams.get('cursor')
  const offset = cursor ? Number(Buffer.from(cursor, 'base64url').toString()) : 0
  const next = offset + limit < all.length ? Buffer.from(String(offset + limit)).toString('base64url') : null
  json({ levels: all.slice(offset, offset + limit), nextCursor: next })
}

/** Requests the fake API got for a store, parsed. */
function requestsOf(storeId: string): URL[] {
  const prefix = `/v1/stores/${encodeURIComponent(storeId)}/`
  return server.requests.filter((r) => r.path.startsWith(prefix)).map((r) => new URL(r.path, 'http://fake'))
}

async function insertProducts(storeId: string, skus: ReadonlyArray<string>, stock: number | null = null): Promise<void> {
  await shop
    .insertInto('shop.products')
    .values(skus.map((sku) => ({ store_id: storeId, sku, title: sku, price: 1, currency: 'EUR', stock, attributes: {} })))
    .execute()
}

async function stockOf(storeId: string): Promise<Record<string, number | null>> {
  const rows = await shop.selectFrom('shop.products').select(['sku', 'stock']).where('store_id', '=', storeId).execute()
  return Object.fromEntries(rows.map((r) => [r.sku, r.stock]))
}

const skuList = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`)

beforeAll(async () => {
  server = await startFakeServer(inventoryApi)
  const deps = bed.deps({ INVENTORY_API_URL: `${server.url}/`, INVENTORY_API_KEY: API_KEY, INVENTORY_API_TIMEOUT_MS: '500' })
  shop = deps.shop.withTables<InventoryTables>()
  await configureJobType(deps.db.kysely, SYNC_INVENTORY_TYPE, syncInventoryTypeSettings)
  await bed.startWorker([createSyncInventory(deps)])
})
afterAll(() => server.close())

describe('sync.inventory through a worker', () => {
  it('pages through a full sync, sets the stock of existing products and reports unknown SKUs', async () => {
    const storeId = 'acme/eu 1'
    const known = skuList('K', 600)
    await insertProducts(storeId, known)
    await insertProducts(storeId, ['NOT-IN-SOURCE'], 7)
    source.set(storeId, [
      ...known.map((sku, i) => ({ sku, available: i % 50, updatedAt: '2024-06-01T10:00:00.123456Z' })),
      ...['U-2', 'U-1'].map((sku) => ({ sku, available: 1, updatedAt: '2024-06-01T10:00:00Z' })),
      { sku: known[1]!, available: -3, updatedAt: '2024-06-01T11:00:00Z' },
    ])

    const job = await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId, payload: {} })
    const done = await bed.waitFinished(job.id)

    expect(done.state).toBe('completed')
    expect(done.result).toEqual({ kind: 'full', pages: 3, levels: 603, applied: 601, skipped: 0, unknownSkus: 2, unknownSample: ['U-1', 'U-2'] })
    expect(done.progress).toEqual({ pages: 3, levels: 603 })
    const stock = await stockOf(storeId)
    expect(stock['K-0049']).toBe(49)
    expect(stock['K-0050']).toBe(0)
    // Oversold (negative) is stored as 0, and the newer level of a SKU wins.
    expect(stock['K-0001']).toBe(0)
    expect(stock['NOT-IN-SOURCE']).toBe(7)

    const urls = requestsOf(storeId)
    expect(urls.map((u) => [u.searchParams.get('limit'), u.searchParams.has('cursor'), u.searchParams.has('skus')])).toEqual([
      ['250', false, false],
      ['250', true, false],
      ['250', true, false],
    ])
    const seen = server.requests.find((r) => r.path.startsWith('/v1/stores/acme%2Feu%201/inventory_levels'))!
    expect(seen.headers['idempotency-key']).toBe(`backroom:sync.inventory:${job.id}:levels:0:0`)

    const sync = await shop.selectFrom('shop.inventory_syncs').selectAll().where('store_id', '=', storeId).executeTakeFirstOrThrow()
    expect(sync).toMatchObject({ last_finished_job_id: job.id, last_kind: 'full', pages: 3, levels_seen: 603, levels_applied: 601, unknown_skus: 2 })
    expect(sync.last_full_finished_at).toBeInstanceOf(Date)
  })

  it('asks only for the given SKUs, in chunks of at most 500, and updates nothing else', async () => {
    const storeId = 'targeted'
    const all = skuList('T', 700)
    await insertProducts(storeId, all, 1)
    source.set(storeId, all.map((sku) => ({ sku, available: 42, updatedAt: '2024-06-01T10:00:00Z' })))
    const wanted = [...all.slice(0, 520), all[0]!, 'NOT-AT-SOURCE']

    const job = await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId, payload: { skus: wanted } })
    const done = await bed.waitFinished(job.id)

    expect(done.state).toBe('completed')
    expect(done.result).toMatchObject({ kind: 'skus', requested: 521, notReturned: 1, applied: 520, levels: 520 })
    const asked = requestsOf(storeId).map((u) => u.searchParams.get('skus')!.split(','))
    expect(asked.map((skus) => skus.length)).toEqual([500, 500, 21])
    expect(new Set(asked.flat())).toEqual(new Set([...all.slice(0, 520), 'NOT-AT-SOURCE']))
    const stock = await stockOf(storeId)
    expect(stock['T-0519']).toBe(42)
    expect(stock['T-0520']).toBe(1)
  })

  it('ignores levels older than the one already applied, and a replay changes nothing', async () => {
    const storeId = 'stale'
    await insertProducts(storeId, ['A', 'B', 'C'], 5)
    source.set(storeId, [
      { sku: 'A', available: 10, updatedAt: '2024-06-01T10:00:00Z' },
      { sku: 'B', available: 20, updatedAt: '2024-06-01T10:00:00Z' },
    ])
    const first = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId })).id)
    expect(first.result).toMatchObject({ applied: 2, skipped: 0 })

    // The source now reports an older level for A (a lagging replica) and a newer one for B.
    source.set(storeId, [
      { sku: 'A', available: 99, updatedAt: '2024-06-01T09:59:59.999Z' },
      { sku: 'B', available: 21, updatedAt: '2024-06-01T10:00:01+02:00' },
      { sku: 'C', available: 30, updatedAt: '2024-06-01T10:00:00Z' },
    ])
    const second = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId })).id)
    expect(second.result).toMatchObject({ applied: 1, skipped: 2 })
    // B's +02:00 time is 08:00:01Z, older than 10:00Z: skipped too; C was never synced: applied.
    expect(await stockOf(storeId)).toEqual({ A: 10, B: 20, C: 30 })

    const replay = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId })).id)
    expect(replay.result).toMatchObject({ applied: 0, skipped: 3 })
    expect(await stockOf(storeId)).toEqual({ A: 10, B: 20, C: 30 })
  })

  it('snoozes on 429 for Retry-After without spending an attempt', async () => {
    const storeId = 'throttled'
    await insertProducts(storeId, ['X'])
    source.set(storeId, [{ sku: 'X', available: 3, updatedAt: '2024-06-01T10:00:00Z' }])
    const job = await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId })
    const snoozed = await bed.waitJob(job.id, (j) => requestsByStore.get(storeId) === 1 && j.state !== 'running')
    expect(['pending', 'scheduled']).toContain(snoozed.state)
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.errors).toEqual([])
    expect(done.attempt).toBe(1)
    expect(requestsByStore.get(storeId)).toBe(2)
    expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
    expect(await stockOf(storeId)).toEqual({ X: 3 })
  })

  it('retries a 5xx through the queue with backoff, then completes', async () => {
    const storeId = 'flaky'
    await insertProducts(storeId, ['Y'])
    source.set(storeId, [{ sku: 'Y', available: 4, updatedAt: '2024-06-01T10:00:00Z' }])
    const done = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId })).id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_server_error'])
    expect(await stockOf(storeId)).toEqual({ Y: 4 })
  })

  it('fails malformed pages, endless cursors and timeouts as retryable upstream errors', async () => {
    const cases = [
      ['truncated', 'upstream_malformed_response'],
      ['wrong-shape', 'upstream_malformed_response'],
      ['looping', 'upstream_malformed_response'],
      ['slow', 'upstream_timeout'],
    ] as const
    const jobs = await Promise.all(cases.map(([storeId]) => bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId, maxAttempts: 1 })))
    for (const [i, [storeId, code]] of cases.entries()) {
      const done = await bed.waitFinished(jobs[i]!.id)
      expect(done.state, storeId).toBe('failed')
      expect(done.lastError?.code, storeId).toBe(code)
    }
    // The looping store got its second page, then was stopped.
    expect(requestsByStore.get('looping')).toBe(2)
  })

  it('fails a payload that breaks the schema at once, without calling the API', async () => {
    for (const payload of [{ skus: 'A' }, { skus: ['A,B'] }, { skus: [''] }, { storeId: 'other' }]) {
      const storeId = 'bad-payload'
      const done = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, storeId, payload })).id)
      expect(done.state).toBe('failed')
      expect(done.attempt).toBe(1)
      expect(done.lastError?.code).toBe('validation_failed')
      expect(done.lastError?.message).toMatch(/sync\.inventory/)
    }
    expect(requestsByStore.get('bad-payload')).toBeUndefined()
  })
})

describe('sync.inventory coalescing', () => {
  it('folds 20 enqueues for a store within the delay into one job holding every SKU; another store keeps its own', async () => {
    const skus = skuList('C', 20)
    for (const storeId of ['fold-a', 'fold-b']) {
      await insertProducts(storeId, skus)
      source.set(storeId, skus.map((sku) => ({ sku, available: 8, updatedAt: '2024-06-01T10:00:00Z' })))
    }
    const a = []
    for (const sku of skus) a.push(await enqueue(bed.deps().db.kysely, syncInventorySpec('fold-a', [sku])))
    const b = [
      await enqueue(bed.deps().db.kysely, syncInventorySpec('fold-b', [skus[0]!])),
      await enqueue(bed.deps().db.kysely, syncInventorySpec('fold-b', [skus[1]!])),
    ]

    expect(new Set(a.map((r) => r.job.id)).size).toBe(1)
    expect(a.slice(1).every((r) => r.coalesced)).toBe(true)
    expect(new Set(b.map((r) => r.job.id)).size).toBe(1)
    expect(b[0]!.job.id).not.toBe(a[0]!.job.id)
    const pending = await getJob(bed.deps().db.kysely, a[0]!.job.id)
    expect(pending.payload).toEqual({ skus })

    const doneA = await bed.waitFinished(a[0]!.job.id)
    const doneB = await bed.waitFinished(b[0]!.job.id)
    expect(doneA.result).toMatchObject({ kind: 'skus', requested: 20, applied: 20 })
    expect(doneB.result).toMatchObject({ kind: 'skus', requested: 2, applied: 2 })
    expect(requestsOf('fold-a').map((u) => u.searchParams.get('skus')!.split(',').length)).toEqual([20])
  })

  it('keeps a full sync folded with targeted ones a full sync, in either order', async () => {
    const skus = skuList('F', 5)
    for (const storeId of ['full-last', 'full-first']) {
      await insertProducts(storeId, skus)
      source.set(storeId, skus.map((sku) => ({ sku, available: 6, updatedAt: '2024-06-01T10:00:00Z' })))
    }
    const db = bed.deps().db.kysely
    const first = await enqueue(db, syncInventorySpec('full-last', [skus[0]!]))
    await enqueue(db, syncInventorySpec('full-last'))
    const other = await enqueue(db, syncInventorySpec('full-first'))
    await enqueue(db, syncInventorySpec('full-first', [skus[0]!]))

    for (const job of [first.job, other.job]) {
      const done = await bed.waitFinished(job.id)
      expect(done.result as SyncInventoryResult, job.storeId).toMatchObject({ kind: 'full', applied: 5 })
    }
    for (const storeId of ['full-last', 'full-first']) {
      expect(requestsOf(storeId).map((u) => u.searchParams.has('skus')), storeId).toEqual([false])
    }
  })
})
