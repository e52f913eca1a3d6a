import { createApiKey } from '@backroom/queue-core'
import { freePort, useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testApp } from './test-app.ts'
import { ApiError } from '../src/api-error.ts'
import { createEnqueueRateLimiter } from '../src/enqueue-rate-limiter.ts'

const t = useTestDatabase()
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/**
 * Whether the Redis-backed case can run: always when TEST_REDIS_URL is set
 * (CI: a Redis that is down must fail the test), else when a local Redis
 * answers, so the suite still passes on a machine with only Node.
 */
const REDIS_TESTABLE = process.env.TEST_REDIS_URL !== undefined || (await redisAnswers(REDIS_URL))

async function redisAnswers(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1_000 })
  try {
    await probe.connect()
    return (await probe.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    probe.disconnect()
  }
}
let redis: Redis
/** Unique per run, so buckets left in a shared Redis by earlier runs never interfere. */
const run = `${process.pid}-${Date.now()}`

beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, ...(REDIS_TESTABLE ? {} : { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null }) })
})
afterAll(async () => {
  await redis?.quit()
})

/** The wait a refused take() asks for, in ms; 0 when it was let through. */
async function waitOf(take: Promise<void>): Promise<number> {
  try {
    await take
    return 0
  } catch (err) {
    if (err instanceof ApiError && err.statusCode === 429) return err.retryAfterMs ?? -1
    throw err
  }
}

describe('createEnqueueRateLimiter (in-process)', () => {
  it('lets a burst through, refuses the next with the wait for one token, and refills with time', async () => {
    let now = 1_000_000
    const limiter = createEnqueueRateLimiter({ rate: 2, redis: null, now: () => now })
    for (let i = 0; i < 4; i++) expect(await waitOf(limiter.take('s', 1))).toBe(0)
    expect(await waitOf(limiter.take('s', 1))).toBe(500)
    // Another store has its own bucket.
    expect(await waitOf(limiter.take('other', 1))).toBe(0)
    now += 500
    expect(await waitOf(limiter.take('s', 1))).toBe(0)
  })

  it('lets a batch larger than the burst through once, then holds the store until the debt is paid', async () => {
    let now = 0
    const limiter = createEnqueueRateLimiter({ rate: 10, redis: null, now: () => now })
    expect(await waitOf(limiter.take('s', 100))).toBe(0)
    // 20 - 100 = -80 tokens: one more job needs 81, 8.1 s at 10/s.
    expect(await waitOf(limiter.take('s', 1))).toBe(8_100)
    now += 8_100
    expect(await waitOf(limiter.take('s', 1))).toBe(0)
  })
})

describe('createEnqueueRateLimiter (Redis)', () => {
  it.skipIf(!REDIS_TESTABLE)('shares one bucket between limiters (API instances) through Redis', async () => {
    const store = `store-${run}-shared`
    const one = createEnqueueRateLimiter({ rate: 1, redis })
    const two = createEnqueueRateLimiter({ rate: 1, redis })
    expect(await waitOf(one.take(store, 1))).toBe(0)
    expect(await waitOf(two.take(store, 1))).toBe(0)
    const wait = await waitOf(one.take(store, 1))
    expect(wait).toBeGreaterThan(0)
    expect(wait).toBeLessThanOrEqual(1_000)
    expect(await redis.pttl(`backroom:enqueue-rate:${store}`)).toBeGreaterThan(0)
  })

  it('falls back to the in-process bucket when Redis does not answer', async () => {
    const dead = new Redis(`redis://127.0.0.1:${await freePort()}`, { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
    try {
      const limiter = createEnqueueRateLimiter({ rate: 1, redis: dead })
      expect(await waitOf(limiter.take('s', 1))).toBe(0)
      expect(await waitOf(limiter.take('s', 1))).toBe(0)
      expect(await waitOf(limiter.take('s', 1))).toBeGreaterThan(0)
    } finally {
      dead.disconnect()
    }
  })
})

describe('POST /v1/jobs rate limit', () => {
  let app: FastifyInstance
  let key: string


  beforeAll(async () => {
    app = await testApp({ db: t.db, redis, batchLimit: 100, storeRate: 1 })
    key = (await createApiKey(t.db.kysely, { storeId: `store-${run}-api` })).key
  })
  afterAll(async () => {
    await app?.close()
  })

  it('answers 429 rate_limited with Retry-After once the store is over its rate, writing nothing', async () => {
    const enqueue = () =>
      app.inject({ method: 'POST', url: '/v1/jobs', headers: { authorization: `Bearer ${key}` }, payload: { type: 'system.canary', payload: {} } })
    expect((await enqueue()).statusCode).toBe(201)
    expect((await enqueue()).statusCode).toBe(201)
    const refused = await enqueue()
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('1')
    expect(refused.json().error.code).toBe('rate_limited')
    const { rows } = await t.db.pool.query('select count(*)::int as n from jobs where store_id = $1', [`store-${run}-api`])
    expect(rows[0].n).toBe(2)
  })
})
