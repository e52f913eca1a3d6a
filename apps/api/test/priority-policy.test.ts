import { createApiKey } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
/** The default policy: store keys at most `normal`. */
let app: FastifyInstance
let platform: string
let storeKey: string

beforeAll(async () => {
  app = await testApp({ db: t.db, storeRate: 10_000 })
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
  storeKey = (await createApiKey(t.db.kysely, { storeId: 'store-prio' })).key
})
afterAll(async () => {
  await app?.close()
})

const post = (target: FastifyInstance, url: string, key: string, payload: object) =>
  target.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` }, payload })
const canary = (extra: object = {}) => ({ type: 'system.canary', payload: {}, ...extra })

async function liveJobs(storeId: string): Promise<number> {
  const { rows } = await t.db.pool.query('select count(*)::int as n from jobs where store_id = $1', [storeId])
  return rows[0].n as number
}

describe('priority policy for store keys (POST /v1/jobs)', () => {
  it('refuses a store key a priority above the ceiling with 403 priority_not_allowed naming it, and writes nothing', async () => {
    const before = await liveJobs('store-prio')
    for (const priority of ['urgent', 'high', 1, 4]) {
      const res = await post(app, '/v1/jobs', storeKey, canary({ priority }))
      expect(res.statusCode, String(priority)).toBe(403)
      expect(res.json().error).toMatchObject({ code: 'priority_not_allowed', details: { maxPriority: 'normal', priority } })
      expect(res.json().error.message).toContain('normal')
    }
    expect(await liveJobs('store-prio')).toBe(before)
  })

  it('accepts a store key at or below the ceiling, and no priority as normal', async () => {
    for (const [priority, stored] of [['normal', 5], ['low', 10], [5, 5], [7, 7], [undefined, 5]] as const) {
      const res = await post(app, '/v1/jobs', storeKey, canary(priority === undefined ? {} : { priority }))
      expect(res.statusCode, String(priority)).toBe(201)
      expect(res.json().job.priority).toBe(stored)
    }
  })

  it('lets a platform key raise priority for any store', async () => {
    const res = await post(app, '/v1/jobs', platform, canary({ priority: 'urgent', storeId: 'store-prio' }))
    expect(res.statusCode).toBe(201)
    expect(res.json().job.priority).toBe(1)
  })

  it('follows the configured ceiling', async () => {
    const high = await testApp({ db: t.db, storeRate: 10_000, storeMaxPriority: 'high' })
    const low = await testApp({ db: t.db, storeRate: 10_000, storeMaxPriority: 'low' })
    try {
      expect((await post(high, '/v1/jobs', storeKey, canary({ priority: 'high' }))).statusCode).toBe(201)
      const urgent = await post(high, '/v1/jobs', storeKey, canary({ priority: 'urgent' }))
      expect(urgent.statusCode).toBe(403)
      expect(urgent.json().error.details.maxPriority).toBe('high')
      // Below normal, the ceiling is also a store key's default: its jobs never outrank the policy.
      const unnamed = await post(low, '/v1/jobs', storeKey, canary())
      expect(unnamed.statusCode).toBe(201)
      expect(unnamed.json().job.priority).toBe(10)
      expect((await post(low, '/v1/jobs', storeKey, canary({ priority: 'normal' }))).statusCode).toBe(403)
    } finally {
      await high.close()
      await low.close()
    }
  })
})

describe('priority policy for store keys (POST /v1/jobs/batch)', () => {
  it('refuses the whole batch with 403 and the index of each item over the ceiling; nothing is written', async () => {
    const before = await liveJobs('store-prio')
    const res = await post(app, '/v1/jobs/batch', storeKey, { jobs: [canary(), canary({ priority: 'low' }), canary({ priority: 'urgent' }), canary({ priority: 2 })] })
    expect(res.statusCode).toBe(403)
    const error = res.json().error
    expect(error.code).toBe('priority_not_allowed')
    expect(error.details).toEqual([
      expect.objectContaining({ index: 2, code: 'priority_not_allowed', details: { maxPriority: 'normal', priority: 'urgent' } }),
      expect.objectContaining({ index: 3, code: 'priority_not_allowed', details: { maxPriority: 'normal', priority: 2 } }),
    ])
    expect(await liveJobs('store-prio')).toBe(before)
  })

  it('reports a priority refusal among the other bad items when the batch is also invalid (400)', async () => {
    const res = await post(app, '/v1/jobs/batch', storeKey, { jobs: [canary({ priority: 'urgent' }), { type: 'system.canary', payload: {}, state: 'running' }] })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('invalid_batch')
    expect(res.json().error.details.map((d: { index: number; code: string }) => [d.index, d.code])).toEqual([
      [0, 'priority_not_allowed'],
      [1, 'invalid_request'],
    ])
  })

  it('lets a platform key send urgent jobs in a batch', async () => {
    const res = await post(app, '/v1/jobs/batch', platform, { jobs: [canary({ priority: 'urgent', storeId: 'store-prio' }), canary({ priority: 1, storeId: 'other' })] })
    expect(res.statusCode).toBe(201)
    expect(res.json().jobs.map((j: { job: { priority: number } }) => j.job.priority)).toEqual([1, 1])
  })
})
