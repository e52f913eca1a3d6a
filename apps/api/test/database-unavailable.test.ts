import { connect, createApiKey, type Db } from '@backroom/queue-core'
import { startTcpProxy, useTestDatabase, type TcpProxy } from '@backroom/queue-core/testing'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DATABASE_RETRY_AFTER_S } from '../src/plugins/error-handler.ts'
import { testApp } from './test-app.ts'

const t = useTestDatabase()

/** The API's pool limits in this file: a connect or an acquire gives up after 2 s, a silent statement after 2 s + the margin. */
const ACQUIRE_TIMEOUT_MS = 2_000
const STATEMENT_TIMEOUT_MS = 2_000
/** Every answer while the database is gone comes within this (the limits above, and room for a busy machine). */
const ANSWER_WITHIN_MS = 10_000

let proxy: TcpProxy
let db: Db
let app: FastifyInstance
let key: string

beforeAll(async () => {
  const target = new URL(t.url)
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  // The app reaches PostgreSQL only through the proxy; the test's own setup goes direct.
  db = connect({ connectionString: proxy.urlFor(t.url), max: 2, acquireTimeoutMs: ACQUIRE_TIMEOUT_MS, statementTimeoutMs: STATEMENT_TIMEOUT_MS })
  app = await testApp({ db, storeRate: 1_000 })
  key = (await createApiKey(t.db.kysely, { storeId: null })).key
})
afterEach(async () => {
  proxy.blackhole(false)
  await proxy.refuse(false)
})
afterAll(async () => {
  await app?.close()
  await db?.close()
  await proxy?.close()
})

const headers = () => ({ authorization: `Bearer ${key}` })
const listJobs = () => app.inject({ method: 'GET', url: '/v1/jobs', headers: headers() })
const enqueue = () => app.inject({ method: 'POST', url: '/v1/jobs', headers: headers(), payload: { type: 'system.canary', storeId: 'store-1', payload: {} } })

/** Sends a request and returns its answer and how long it took. */
async function timed(send: () => Promise<LightMyRequestResponse>): Promise<{ res: LightMyRequestResponse; ms: number }> {
  const started = Date.now()
  const res = await send()
  return { res, ms: Date.now() - started }
}

function expectUnavailable({ res, ms }: { res: LightMyRequestResponse; ms: number }) {
  expect({ status: res.statusCode, body: res.json() }).toEqual({
    status: 503,
    body: { error: { code: 'database_unavailable', message: expect.any(String) } },
  })
  expect(res.headers['retry-after']).toBe(String(DATABASE_RETRY_AFTER_S))
  expect(ms).toBeLessThan(ANSWER_WITHIN_MS)
}

/** Once the database is reachable again the very next requests succeed: no dead connection is handed out. */
async function expectBack() {
  expect((await listJobs()).statusCode).toBe(200)
  expect((await enqueue()).statusCode).toBe(201)
}

describe('while the database is unreachable', () => {
  it('answers 503 database_unavailable with Retry-After when connections are reset and refused, and 2xx once it is back', async () => {
    expect((await listJobs()).statusCode).toBe(200)
    await proxy.refuse(true)
    proxy.cutAll()
    expectUnavailable(await timed(listJobs))
    expectUnavailable(await timed(enqueue))
    await proxy.refuse(false)
    await expectBack()
  })

  it('answers 503 within a bounded time when the network goes silent, also with more requests than connections, and 2xx after healing', async () => {
    expect((await listJobs()).statusCode).toBe(200)
    proxy.blackhole(true)
    // An idle pooled connection is silently dead: its statement gets no answer.
    expectUnavailable(await timed(listJobs))
    // New connections are accepted by the network and never answered; more requests than the pool holds wait for one.
    const answers = await Promise.all(Array.from({ length: 5 }, () => timed(enqueue)))
    for (const answer of answers) expectUnavailable(answer)
    // Healed as after a failover: what was open stays dead, new connections work.
    proxy.blackhole(false)
    await expectBack()
  })
})
