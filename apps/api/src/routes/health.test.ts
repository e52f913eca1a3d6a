import { connect } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../app.ts'

const t = useTestDatabase()
let app: FastifyInstance

beforeAll(async () => {
  app = buildApp({ db: t.db })
  await app.ready()
})
afterAll(async () => {
  await app.close()
})

describe('GET /healthz', () => {
  it('answers ok without touching the database', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok' })
  })
})

describe('GET /readyz', () => {
  it('answers ok when the database answers select 1', async () => {
    const res = await app.inject({ method: 'GET', url: '/readyz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok' })
  })

  it('answers 503 with an error body when the pool is closed', async () => {
    const db = connect({ connectionString: t.url, max: 1 })
    await db.close()
    const closed = buildApp({ db })
    try {
      const res = await closed.inject({ method: 'GET', url: '/readyz' })
      expect(res.statusCode).toBe(503)
      expect(res.json()).toEqual({ error: { code: 'database_unavailable', message: 'the database is not reachable' } })
      // The liveness probe must not follow the database down.
      expect((await closed.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
    } finally {
      await closed.close()
    }
  })
})
