import { createApiKey, createWorkerPool, getJob, type WorkerPool } from '@backroom/queue-core'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { configureJobTypes, createHandlers, handlerDeps, migrateShop } from '@backroom/handlers'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
let app: FastifyInstance
let pool: WorkerPool
let storeKey: string
let platform: string

beforeAll(async () => {
  await migrateShop(t.url)
  await configureJobTypes(t.db.kysely)
  app = await testApp({ db: t.db, uploadLimit: 4096 })
  storeKey = (await createApiKey(t.db.kysely, { storeId: 'store-up' })).key
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
  // A worker as deployed runs the handlers; the API itself only stored the file.
  pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: createHandlers(handlerDeps(t.db, {})), concurrency: 4 })
  await pool.start()
})
afterAll(async () => {
  await pool?.stop()
  await app?.close()
})

const upload = (url: string, key: string, body: string, contentType = 'text/csv') =>
  app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, payload: body })
const uploadRows = async () => (await t.db.pool.query('select count(*)::int as n from shop.feed_uploads')).rows[0].n as number

describe('POST /v1/uploads', () => {
  it('stores a feed that import.products then imports for the same store', async () => {
    const csv = 'sku,title,price,currency,stock\nA-1,First,9.90,EUR,3\nA-2,Second,1.00,EUR,\nA-3,Bad,x,EUR,1\n'
    const res = await upload('/v1/uploads?format=csv', storeKey, csv)
    expect(res.statusCode, res.body).toBe(201)
    const { uploadId, bytes } = res.json()
    expect(bytes).toBe(Buffer.byteLength(csv))
    const enqueued = await app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { authorization: `Bearer ${storeKey}` },
      payload: { type: 'import.products', payload: { uploadId } },
    })
    expect(enqueued.statusCode, enqueued.body).toBe(201)
    const id = enqueued.json().job.id as string
    const done = await waitFor(async () => {
      const job = await getJob(t.db.kysely, id)
      return ['completed', 'failed'].includes(job.state) ? job : null
    }, { what: 'the import to finish' })
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    expect(done.result).toMatchObject({ total: 3, rowsDone: 2, rowsFailed: 1 })
    const { rows } = await t.db.pool.query(`select sku from shop.products where store_id = 'store-up' order by sku`)
    expect(rows.map((r) => r.sku)).toEqual(['A-1', 'A-2'])
  })

  it('refuses a file over the limit with 413 and keeps nothing of it', async () => {
    const before = await uploadRows()
    const res = await upload('/v1/uploads?format=jsonl', storeKey, `${'{"sku":"x"}\n'.repeat(500)}`, 'application/x-ndjson')
    expect(res.statusCode).toBe(413)
    expect(res.json().error.code).toBe('payload_too_large')
    expect(await uploadRows()).toBe(before)
  })

  it('needs a format, a store from platform keys only, and a feed content type', async () => {
    const before = await uploadRows()
    expect((await upload('/v1/uploads', storeKey, 'sku\n')).statusCode).toBe(400)
    expect((await upload('/v1/uploads?format=xls', storeKey, 'sku\n')).statusCode).toBe(400)
    expect((await upload('/v1/uploads?format=csv', platform, 'sku\n')).json().error.code).toBe('store_required')
    expect((await upload('/v1/uploads?format=csv&storeId=other', storeKey, 'sku\n')).json().error.code).toBe('store_not_allowed')
    expect((await upload('/v1/uploads?format=csv', storeKey, '{}', 'application/json')).statusCode).toBe(415)
    expect((await upload('/v1/uploads?format=csv', 'nope', 'sku\n')).statusCode).toBe(401)
    expect(await uploadRows()).toBe(before)
    expect((await upload('/v1/uploads?format=csv&storeId=store-p', platform, 'sku,title,price,currency\n')).statusCode).toBe(201)
  })
})
