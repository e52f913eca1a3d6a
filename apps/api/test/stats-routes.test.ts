import { createApiKey, enqueueMany } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
let app: FastifyInstance
let platform: string
let storeA: string

const get = (key: string, query = '') =>
  app.inject({ method: 'GET', url: `/v1/stats${query}`, headers: { authorization: `Bearer ${key}` } })

beforeAll(async () => {
  app = buildApp({ db: t.db })
  await app.ready()
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
  storeA = (await createApiKey(t.db.kysely, { storeId: 'store-a' })).key
  await enqueueMany(t.db.kysely, [
    { type: 'system.canary', storeId: 'store-a', payload: {} },
    { type: 'system.canary', storeId: 'store-a', payload: {} },
    { type: 'system.canary', storeId: 'store-a', payload: {} },
    { type: 'system.canary', storeId: 'store-b', payload: {} },
    { type: 'system.canary', storeId: 'store-b', payload: {}, delayMs: 60_000 },
  ])
})
afterAll(async () => {
  await app.close()
})

describe('GET /v1/stats', () => {
  it('gives a platform key every store: overall, per type, per store and per store and type', async () => {
    const res = await get(platform)
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.overall).toMatchObject({ pending: 4, scheduled: 1, running: 0, longRunning: 0 })
    expect(body.byType).toEqual([expect.objectContaining({ type: 'system.canary', pending: 4 })])
    expect(body.byStore.map((s: { storeId: string; pending: number }) => [s.storeId, s.pending])).toEqual([
      ['store-a', 3],
      ['store-b', 1],
    ])
    expect(body.byStoreType).toHaveLength(2)
    expect(body.thresholds).toEqual({ backlog: 1_000, oldestPendingMs: 300_000, longRunningMs: 1_800_000 })
  })

  it('raises alerts against thresholds given in the query', async () => {
    const body = (await get(platform, '?backlog=2')).json()
    expect(body.overall.alerts).toEqual(['backlog'])
    expect(body.byStore.find((s: { storeId: string }) => s.storeId === 'store-a').alerts).toEqual(['backlog'])
    expect(body.byStore.find((s: { storeId: string }) => s.storeId === 'store-b').alerts).toEqual([])
  })

  it('lets a platform key narrow to one store', async () => {
    const body = (await get(platform, '?storeId=store-b')).json()
    expect(body.overall).toMatchObject({ pending: 1, scheduled: 1 })
    expect(body.byStore.map((s: { storeId: string }) => s.storeId)).toEqual(['store-b'])
  })

  it('shows a store key its own store only, on every line', async () => {
    const res = await get(storeA)
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.overall).toMatchObject({ pending: 3, scheduled: 0 })
    expect(body.byStore.map((s: { storeId: string }) => s.storeId)).toEqual(['store-a'])
    expect(body.byStoreType.every((l: { storeId: string }) => l.storeId === 'store-a')).toBe(true)
  })

  it('refuses a store key naming a store, even another one', async () => {
    const res = await get(storeA, '?storeId=store-b')
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('store_not_allowed')
  })

  it('answers 400 for out-of-range query fields, 401 without a key', async () => {
    expect((await get(platform, '?storeLimit=0')).statusCode).toBe(400)
    expect((await get(platform, '?backlog=-1')).json().error.code).toBe('invalid_request')
    expect((await app.inject({ method: 'GET', url: '/v1/stats' })).statusCode).toBe(401)
  })
})
