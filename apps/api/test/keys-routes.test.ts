import { Writable } from 'node:stream'
import { createApiKey, type Db } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { authPlugin } from '../src/plugins/auth.ts'
import { errorHandler, notFoundHandler } from '../src/plugins/error-handler.ts'
import { keysRoutes } from '../src/routes/v1/keys.ts'

const t = useTestDatabase()
let app: FastifyInstance
let platform: string
let storeKey: string
/** Every log line the app wrote, to prove keys never reach the logs. */
const logLines: string[] = []

/** Error handling, auth and the keys routes as buildApp registers them, logging at debug into `logLines`. */
async function keysApp(db: Db): Promise<FastifyInstance> {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk))
      done()
    },
  })
  const instance = Fastify({ logger: { level: 'debug', stream } })
  instance.setErrorHandler(errorHandler)
  instance.setNotFoundHandler(notFoundHandler)
  instance.register(authPlugin, { db, adminKey: null })
  instance.register(keysRoutes, { db })
  await instance.ready()
  return instance
}

beforeAll(async () => {
  app = await keysApp(t.db)
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
  storeKey = (await createApiKey(t.db.kysely, { storeId: 'store-a' })).key
})
afterAll(async () => {
  await app?.close()
})

const call = (method: 'POST' | 'DELETE', url: string, key: string, payload?: object) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload ? { payload } : {}) })

describe('POST /v1/keys', () => {
  it('creates a store key once: 201 { id, key, storeId }, and the key authenticates', async () => {
    const res = await call('POST', '/v1/keys', platform, { storeId: 'store-9', label: 'dashboard' })
    expect(res.statusCode).toBe(201)
    const body = res.json()
    expect(body).toEqual({ id: expect.stringMatching(/^\d+$/), key: expect.stringMatching(/^brk_\d+_/), storeId: 'store-9' })
    // The new key is accepted by auth (the keys routes answer 403 to a store key, not 401).
    expect((await call('POST', '/v1/keys', body.key, {})).statusCode).toBe(403)
    expect(logLines.join('')).not.toContain(body.key)
  })

  it('creates a platform key when no store is named', async () => {
    const res = await call('POST', '/v1/keys', platform, {})
    expect(res.statusCode).toBe(201)
    expect(res.json().storeId).toBeNull()
  })

  it('answers 403 to a store key, 401 without a key, 400 for unknown fields', async () => {
    const forbidden = await call('POST', '/v1/keys', storeKey, { storeId: 'store-a' })
    expect(forbidden.statusCode).toBe(403)
    expect(forbidden.json().error.code).toBe('forbidden')
    expect((await app.inject({ method: 'POST', url: '/v1/keys', payload: {} })).statusCode).toBe(401)
    const extra = await call('POST', '/v1/keys', platform, { storeId: 'store-a', admin: true })
    expect(extra.statusCode).toBe(400)
    expect((await call('POST', '/v1/keys', platform, { storeId: '' })).statusCode).toBe(400)
  })
})

describe('DELETE /v1/keys/:id', () => {
  it('revokes a key: 204, and the key then gets 401', async () => {
    const created = (await call('POST', '/v1/keys', platform, { storeId: 'store-r' })).json()
    const res = await call('DELETE', `/v1/keys/${created.id}`, platform)
    expect(res.statusCode).toBe(204)
    expect(res.body).toBe('')
    expect((await call('POST', '/v1/keys', created.key, {})).statusCode).toBe(401)
  })

  it('answers 404 for unknown or malformed ids, 403 to a store key', async () => {
    for (const id of ['99999999', 'abc']) {
      const res = await call('DELETE', `/v1/keys/${id}`, platform)
      expect(res.statusCode, id).toBe(404)
      expect(res.json().error.code).toBe('key_not_found')
    }
    const created = (await call('POST', '/v1/keys', platform, { storeId: 'store-a' })).json()
    expect((await call('DELETE', `/v1/keys/${created.id}`, storeKey)).statusCode).toBe(403)
  })

  it('never writes a key or the Authorization header to the logs', () => {
    const logs = logLines.join('')
    expect(logs).toContain('api key created')
    expect(logs).not.toContain(platform)
    expect(logs).not.toContain(storeKey)
    expect(logs).not.toMatch(/brk_\d+_[A-Za-z0-9_-]{43}/)
  })
})
