import { createApiKey, defineHandler, enqueueMany, getJob, PermanentError, type Db, type Handler } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
const SECRET = 'cron-secret-for-tests-0123456789'

const ok = defineHandler({ type: 'pp.ok', payload: Type.Object({}), run: () => ({ done: true }) })
const bad = defineHandler({
  type: 'pp.bad',
  payload: Type.Object({}),
  run: () => {
    throw new PermanentError('nope')
  },
})

/** A loader that counts its calls, as the default one would import @backroom/handlers. */
function countingLoader(handlers: ReadonlyArray<Handler>) {
  const calls: Db[] = []
  return {
    calls,
    load: async (db: Db) => {
      calls.push(db)
      return handlers
    },
  }
}

let app: FastifyInstance
const loader = countingLoader([ok, bad])

const drain = (body?: unknown, secret: string | null = SECRET) =>
  app.inject({
    method: 'POST',
    url: '/v1/internal/process-pending',
    headers: secret === null ? {} : { authorization: `Bearer ${secret}` },
    ...(body === undefined ? {} : { payload: body as object }),
  })

beforeAll(async () => {
  app = buildApp({ db: t.db, cronSecret: SECRET, loadHandlers: loader.load })
  await app.ready()
})
afterAll(async () => {
  await app.close()
})

describe('POST /v1/internal/process-pending', () => {
  it('loads no handler code while other routes are served', async () => {
    const key = (await createApiKey(t.db.kysely, { storeId: null })).key
    for (const url of ['/healthz', '/readyz', '/metrics', '/docs/json', '/v1/stats']) {
      const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } })
      expect(res.statusCode).toBe(200)
    }
    expect(loader.calls).toHaveLength(0)
  })

  it('answers 401 without the cron secret or with a wrong one, before reading the body', async () => {
    for (const secret of [null, 'wrong', `${SECRET}x`]) {
      const res = await drain({ maxJobs: 1 }, secret)
      expect(res.statusCode).toBe(401)
      expect(res.json().error.code).toBe('unauthorized')
    }
    // Even a body the schema would reject.
    expect((await drain({ maxJobs: 0 }, 'wrong')).statusCode).toBe(401)
    // An API key is not the cron secret.
    const key = (await createApiKey(t.db.kysely, { storeId: null })).key
    expect((await drain({}, key)).statusCode).toBe(401)
    expect(loader.calls).toHaveLength(0)
  })

  it('answers 400 for a body out of range', async () => {
    expect((await drain({ maxJobs: 0 })).statusCode).toBe(400)
    expect((await drain({ maxJobs: 1_001 })).statusCode).toBe(400)
    expect((await drain({ budgetMs: 999 })).json().error.code).toBe('invalid_request')
  })

  it('runs real handlers, respects maxJobs and returns the counts', async () => {
    const jobs = await enqueueMany(t.db.kysely, [
      ...Array.from({ length: 4 }, () => ({ type: 'pp.ok', storeId: 's1', payload: {}, priority: 'high' as const })),
      { type: 'pp.bad', storeId: 's1', payload: {}, priority: 'high' as const },
      ...Array.from({ length: 3 }, () => ({ type: 'pp.ok', storeId: 's2', payload: {}, priority: 'low' as const })),
    ])
    const first = await drain({ maxJobs: 5, budgetMs: 10_000 })
    expect(first.statusCode).toBe(200)
    const body = first.json()
    expect(body).toMatchObject({ processed: 5, failed: 1, remaining: 3 })
    expect(Object.keys(body).sort()).toEqual(['durationMs', 'failed', 'processed', 'remaining'])
    expect((await getJob(t.db.kysely, jobs[4]!.job.id)).state).toBe('failed')

    // No body: the defaults (50 jobs, 25 s) take the rest.
    const second = await drain()
    expect(second.statusCode).toBe(200)
    expect(second.json()).toMatchObject({ processed: 3, failed: 0, remaining: 0 })
    // Handlers were loaded on the first call and kept.
    expect(loader.calls).toHaveLength(1)
  })

  it('counts the runs in /metrics', async () => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    expect(text).toMatch(/backroom_jobs_completed_total\{type="pp.ok"\} 7/)
    expect(text).toMatch(/backroom_jobs_failed_total\{type="pp.bad"\} 1/)
  })

  it('is an unknown route when CRON_SECRET is not set', async () => {
    const disabled = buildApp({ db: t.db, cronSecret: null, loadHandlers: loader.load })
    try {
      const res = await disabled.inject({ method: 'POST', url: '/v1/internal/process-pending', headers: { authorization: `Bearer ${SECRET}` } })
      expect(res.statusCode).toBe(404)
      expect(res.json().error.code).toBe('not_found')
    } finally {
      await disabled.close()
    }
  })
})
