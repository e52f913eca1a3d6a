import { connect, createApiKey, enqueueMany } from '@backroom/queue-core'
import { freePort, useTestDatabase } from '@backroom/queue-core/testing'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
let app: FastifyInstance

const scrape = async (target = app) => {
  const res = await target.inject({ method: 'GET', url: '/metrics' })
  expect(res.statusCode).toBe(200)
  return res
}

beforeAll(async () => {
  // No cache window: each scrape reads the figures (the window is tested in metrics-cache.test.ts).
  app = buildApp({ db: t.db, metricsCacheMs: 0 })
  await app.ready()
})
afterAll(async () => {
  await app.close()
})

describe('GET /metrics', () => {
  it('answers in the Prometheus text format with the process defaults, without a key', async () => {
    const res = await scrape()
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(res.body).toMatch(/^# HELP process_cpu_user_seconds_total/m)
    expect(res.body).toMatch(/^nodejs_eventloop_lag_seconds /m)
  })

  it('times requests by route pattern, not raw URL', async () => {
    const key = (await createApiKey(t.db.kysely, { storeId: 'store-m' })).key
    await app.inject({ method: 'GET', url: '/v1/jobs/123456', headers: { authorization: `Bearer ${key}` } })
    await app.inject({ method: 'GET', url: '/no/such/route/42' })
    const { body } = await scrape()
    expect(body).toMatch(/^http_request_duration_seconds_count\{method="GET",route="\/v1\/jobs\/:id",status="404"\} 1$/m)
    expect(body).toMatch(/^http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} 1$/m)
    expect(body).not.toContain('123456')
    expect(body).not.toContain('/no/such/route')
  })

  it('reads queue depth and oldest pending age per type from the database at each scrape', async () => {
    await enqueueMany(t.db.kysely, [
      { type: 'm.depth', storeId: 's1', payload: {} },
      { type: 'm.depth', storeId: 's2', payload: {} },
      { type: 'm.depth', storeId: 's2', payload: {}, delayMs: 60_000 },
    ])
    const { body } = await scrape()
    expect(body).toMatch(/^backroom_queue_jobs\{type="m.depth",state="pending"\} 2$/m)
    expect(body).toMatch(/^backroom_queue_jobs\{type="m.depth",state="scheduled"\} 1$/m)
    expect(body).toMatch(/^backroom_queue_oldest_pending_seconds\{type="m.depth"\} [0-9.e-]+$/m)
    // Store ids never become labels.
    expect(body).not.toContain('s2')
  })

  it('reports the pool and the drain counters', async () => {
    const { body } = await scrape()
    for (const state of ['total', 'idle', 'waiting']) expect(body).toMatch(new RegExp(`^backroom_db_pool_connections\\{state="${state}"\\} \\d+$`, 'm'))
    for (const name of ['backroom_jobs_enqueued_total', 'backroom_jobs_claimed_total', 'backroom_jobs_completed_total', 'backroom_jobs_failed_total', 'backroom_job_duration_seconds']) {
      expect(body).toContain(`# TYPE ${name} `)
    }
  })

  it('keeps answering when the database does not, counting the failed read', async () => {
    const db = connect({ connectionString: t.url, max: 1 })
    await db.close()
    // A second app in the same process: each app has its own registry.
    const down = buildApp({ db })
    try {
      const { body } = await scrape(down)
      expect(body).toMatch(/^backroom_queue_stats_errors_total 1$/m)
      expect(body).not.toMatch(/^backroom_queue_jobs\{/m)
    } finally {
      await down.close()
    }
  })
})

// health.ts is tested in src/routes/health.test.ts; its Redis check lives here with the other ops endpoints.
describe('GET /readyz with Redis configured', () => {
  it('answers 503 redis_unavailable when Redis does not answer PING, while /healthz stays 200', async () => {
    const redis = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    const withRedis = buildApp({ db: t.db, redis, readyTimeoutMs: 1_000 })
    try {
      const res = await withRedis.inject({ method: 'GET', url: '/readyz' })
      expect(res.statusCode).toBe(503)
      expect(res.json()).toEqual({ error: { code: 'redis_unavailable', message: 'redis is not reachable' } })
      expect((await withRedis.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
    } finally {
      await withRedis.close()
      redis.disconnect()
    }
  })

  it.skipIf(!process.env.TEST_REDIS_URL)('answers ok when Redis answers PING', async () => {
    const redis = new Redis(process.env.TEST_REDIS_URL as string, { maxRetriesPerRequest: 1 })
    const withRedis = buildApp({ db: t.db, redis })
    try {
      expect((await withRedis.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({ status: 'ok' })
    } finally {
      await withRedis.close()
      redis.disconnect()
    }
  })
})
