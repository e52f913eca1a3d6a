import { createApiKey, setStoreLiveJobCap } from '@backroom/queue-core'
import type { FastifyInstance } from 'fastify'
import { useTestDatabase } from '@backroom/queue-core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_BODY_LIMIT } from '../src/config.ts'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
let app: FastifyInstance
let platform: string
let storeA: string


beforeAll(async () => {
  // Store keys may ask for high here (the default ceiling is normal: test/priority-policy.test.ts).
  app = await testApp({ db: t.db, batchLimit: 5, storeRate: 1_000, storeMaxPriority: 'high' })
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
  storeA = (await createApiKey(t.db.kysely, { storeId: 'store-a' })).key
})
afterAll(async () => {
  await app?.close()
})

const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const post = (url: string, key: string, payload: unknown) => app.inject({ method: 'POST', url, headers: auth(key), payload: payload as object })
const get = (url: string, key: string) => app.inject({ method: 'GET', url, headers: auth(key) })

async function rowCount(): Promise<number> {
  const { rows } = await t.db.pool.query('select (select count(*) from jobs) + (select count(*) from job_history) as n')
  return Number(rows[0].n)
}

async function enqueuedCount(type: string): Promise<number> {
  const metric = await app.queueMetrics.jobsEnqueued.get()
  return metric.values.find((v) => v.labels.type === type)?.value ?? 0
}

describe('POST /v1/jobs', () => {
  it('creates a job for the store key\'s store: 201 with the job view', async () => {
    const res = await post('/v1/jobs', storeA, { type: 'system.canary', payload: { sleepMs: 0 }, priority: 'high', userId: 'user-1' })
    expect(res.statusCode).toBe(201)
    const body = res.json()
    expect(body.deduped).toBe(false)
    expect(body.job).toMatchObject({ type: 'system.canary', storeId: 'store-a', userId: 'user-1', state: 'pending', priority: 2, attempt: 0, maxAttempts: null, startedAt: null, finishedAt: null, lastError: null })
    expect(Object.keys(body.job).sort()).toEqual(
      ['attempt', 'createdAt', 'dedupeKey', 'finishedAt', 'id', 'lastError', 'maxAttempts', 'priority', 'progress', 'runAt', 'startedAt', 'state', 'storeId', 'type', 'userId'],
    )
    expect(new Date(body.job.createdAt).toISOString()).toBe(body.job.createdAt)
    expect(await enqueuedCount('system.canary')).toBeGreaterThanOrEqual(1)
  })

  it('lets a platform key enqueue for the store it names, scheduled by delayMs', async () => {
    const res = await post('/v1/jobs', platform, { type: 'system.canary', payload: {}, storeId: 'store-p', delayMs: 60_000, maxAttempts: 3 })
    expect(res.statusCode).toBe(201)
    expect(res.json().job).toMatchObject({ storeId: 'store-p', state: 'scheduled', maxAttempts: 3 })
  })

  it('answers 200 with deduped: true and the live job when the dedupe key is taken', async () => {
    const body = { type: 'system.canary', payload: {}, dedupeKey: 'nightly' }
    const first = await post('/v1/jobs', storeA, body)
    const counted = await enqueuedCount('system.canary')
    const second = await post('/v1/jobs', storeA, body)
    expect(first.statusCode).toBe(201)
    expect(second.statusCode).toBe(200)
    expect(second.json()).toMatchObject({ deduped: true, job: { id: first.json().job.id, dedupeKey: 'nightly' } })
    expect(await enqueuedCount('system.canary')).toBe(counted)
  })

  it('refuses fields that do not belong in the body with 400, writing nothing', async () => {
    const before = await rowCount()
    for (const extra of [{ state: 'running' }, { attempt: 3 }, { lockedBy: 'w1' }, { leaseToken: 'x' }]) {
      const res = await post('/v1/jobs', storeA, { type: 'system.canary', payload: {}, ...extra })
      expect(res.statusCode, JSON.stringify(extra)).toBe(400)
      expect(res.json().error.code).toBe('invalid_request')
    }
    expect(await rowCount()).toBe(before)
  })

  it('answers 400 unknown_job_type and 400 invalid_payload with details per path', async () => {
    const unknown = await post('/v1/jobs', storeA, { type: 'nope.never', payload: {} })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().error.code).toBe('unknown_job_type')
    const bad = await post('/v1/jobs', storeA, { type: 'system.canary', payload: { sleepMs: -5, fail: 'sometimes' } })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.code).toBe('invalid_payload')
    const paths = bad.json().error.details.map((d: { path: string }) => d.path)
    expect(paths).toEqual(expect.arrayContaining(['/payload/sleepMs', '/payload/fail']))
  })

  it('answers 400 for a store the key may not name, or a missing one', async () => {
    expect((await post('/v1/jobs', platform, { type: 'system.canary', payload: {} })).json().error.code).toBe('store_required')
    const res = await post('/v1/jobs', storeA, { type: 'system.canary', payload: {}, storeId: 'store-a' })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('store_not_allowed')
  })

  it('answers 400 for bad values: runAt with delayMs, bad dates, priorities, missing payload, bad JSON', async () => {
    const cases: unknown[] = [
      { type: 'system.canary', payload: {}, runAt: new Date().toISOString(), delayMs: 5 },
      { type: 'system.canary', payload: {}, runAt: 'tomorrow' },
      { type: 'system.canary', payload: {}, priority: 'asap' },
      { type: 'system.canary', payload: {}, priority: 11 },
      { type: 'system.canary' },
      { type: 'system.canary', payload: {}, maxAttempts: 0 },
    ]
    for (const body of cases) {
      const res = await post('/v1/jobs', storeA, body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json().error.code).toBe('invalid_request')
    }
    const malformed = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { ...auth(storeA), 'content-type': 'application/json' }, payload: '{"type":' })
    expect(malformed.statusCode).toBe(400)
  })

  it('answers 413 for a body over the limit', async () => {
    const res = await post('/v1/jobs', storeA, { type: 'system.canary', payload: { pad: 'x'.repeat(DEFAULT_BODY_LIMIT) } })
    expect(res.statusCode).toBe(413)
    expect(res.json().error.code).toBe('payload_too_large')
  })

  it('answers 429 with Retry-After when the store is at its live-job cap', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'store-capped', 1)
    expect((await post('/v1/jobs', platform, { type: 'system.canary', payload: {}, storeId: 'store-capped' })).statusCode).toBe(201)
    const res = await post('/v1/jobs', platform, { type: 'system.canary', payload: {}, storeId: 'store-capped' })
    expect(res.statusCode).toBe(429)
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(res.json().error.code).toBe('store_capacity')
  })

  it('answers 401 without a valid key', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { type: 'system.canary', payload: {} } })
    expect(res.statusCode).toBe(401)
  })
})

describe('POST /v1/jobs/batch', () => {
  it('creates every job in order: 201 with one outcome per item', async () => {
    const res = await post('/v1/jobs/batch', platform, {
      jobs: [
        { type: 'system.canary', payload: {}, storeId: 'store-b1' },
        { type: 'system.canary', payload: {}, storeId: 'store-b2', dedupeKey: 'k' },
        { type: 'system.canary', payload: {}, storeId: 'store-b2', dedupeKey: 'k' },
      ],
    })
    expect(res.statusCode).toBe(201)
    const outcomes = res.json().jobs
    expect(outcomes.map((o: { job: { storeId: string } }) => o.job.storeId)).toEqual(['store-b1', 'store-b2', 'store-b2'])
    expect(outcomes.map((o: { deduped: boolean }) => o.deduped)).toEqual([false, false, true])
    expect(outcomes[2].job.id).toBe(outcomes[1].job.id)
  })

  it('answers 200 when every item was deduped', async () => {
    const body = { jobs: [{ type: 'system.canary', payload: {}, dedupeKey: 'once' }] }
    expect((await post('/v1/jobs/batch', storeA, body)).statusCode).toBe(201)
    const again = await post('/v1/jobs/batch', storeA, body)
    expect(again.statusCode).toBe(200)
    expect(again.json().jobs[0].deduped).toBe(true)
  })

  it('reports every bad item by index and writes nothing', async () => {
    const before = await rowCount()
    const res = await post('/v1/jobs/batch', storeA, {
      jobs: [
        { type: 'system.canary', payload: {} },
        { type: 'system.canary', payload: {}, state: 'completed' },
        { type: 'nope.never', payload: {} },
        { type: 'system.canary', payload: { sleepMs: 'long' } },
        { type: 'system.canary', payload: {}, storeId: 'store-z' },
        'not an object',
      ],
    })
    expect(res.statusCode).toBe(400)
    // Six items are over this app's batch limit of 5: the limit is checked first.
    expect(res.json().error.code).toBe('batch_too_large')
    const items = await post('/v1/jobs/batch', storeA, {
      jobs: [
        { type: 'system.canary', payload: {} },
        { type: 'system.canary', payload: {}, state: 'completed' },
        { type: 'nope.never', payload: {} },
        { type: 'system.canary', payload: { sleepMs: 'long' } },
        { type: 'system.canary', payload: {}, storeId: 'store-z' },
      ],
    })
    expect(items.statusCode).toBe(400)
    expect(items.json().error.code).toBe('invalid_batch')
    expect(items.json().error.details.map((d: { index: number; code: string }) => [d.index, d.code])).toEqual([
      [1, 'invalid_request'],
      [2, 'unknown_job_type'],
      [3, 'invalid_payload'],
      [4, 'store_not_allowed'],
    ])
    expect(await rowCount()).toBe(before)
  })

  it('writes nothing when one store of the batch is over its cap', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'store-full', 1)
    const before = await rowCount()
    const res = await post('/v1/jobs/batch', platform, {
      jobs: [
        { type: 'system.canary', payload: {}, storeId: 'store-free' },
        { type: 'system.canary', payload: {}, storeId: 'store-full' },
        { type: 'system.canary', payload: {}, storeId: 'store-full' },
      ],
    })
    expect(res.statusCode).toBe(429)
    expect(await rowCount()).toBe(before)
  })

  it('answers 400 for an empty batch or a body without jobs', async () => {
    expect((await post('/v1/jobs/batch', storeA, { jobs: [] })).statusCode).toBe(400)
    expect((await post('/v1/jobs/batch', storeA, { type: 'system.canary', payload: {} })).statusCode).toBe(400)
  })
})

describe('GET /v1/jobs/:id and GET /v1/jobs', () => {
  it('reads a job by id, and 404 for unknown or malformed ids', async () => {
    const created = (await post('/v1/jobs', storeA, { type: 'system.canary', payload: {} })).json().job
    const res = await get(`/v1/jobs/${created.id}`, storeA)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ job: created })
    for (const id of ['999999999', 'abc', '-1']) {
      const missing = await get(`/v1/jobs/${id}`, storeA)
      expect(missing.statusCode).toBe(404)
      expect(missing.json().error.code).toBe('job_not_found')
    }
  })

  it('lists newest first with filters and a cursor that walks every page once', async () => {
    const made: string[] = []
    for (let i = 0; i < 5; i++) made.push((await post('/v1/jobs', platform, { type: 'system.canary', payload: {}, storeId: 'store-list', userId: `u${i % 2}` })).json().job.id)
    const seen: string[] = []
    let url = '/v1/jobs?storeId=store-list&limit=2'
    for (;;) {
      const page = (await get(url, platform)).json()
      seen.push(...page.jobs.map((j: { id: string }) => j.id))
      if (page.nextCursor === null) break
      url = `/v1/jobs?storeId=store-list&limit=2&cursor=${page.nextCursor}`
    }
    expect(seen).toEqual([...made].reverse())
    const filtered = (await get('/v1/jobs?storeId=store-list&userId=u0&state=pending&type=system.canary', platform)).json()
    expect(filtered.jobs.map((j: { id: string }) => j.id)).toEqual([made[4], made[2], made[0]])
    const after = (await get(`/v1/jobs?storeId=store-list&createdAfter=${new Date(Date.now() + 60_000).toISOString()}`, platform)).json()
    expect(after).toEqual({ jobs: [], nextCursor: null })
  })

  it('answers 400 for bad query values', async () => {
    for (const query of ['limit=0', 'limit=101', 'limit=ten', 'state=done', 'createdAfter=yesterday', 'cursor=bogus', 'sort=id']) {
      const res = await get(`/v1/jobs?${query}`, platform)
      expect(res.statusCode, query).toBe(400)
      expect(res.json().error.code).toBe('invalid_request')
    }
  })
})

describe('POST /v1/jobs/:id/cancel and /retry', () => {
  it('cancels a pending job, then retries it back to pending', async () => {
    const job = (await post('/v1/jobs', storeA, { type: 'system.canary', payload: {} })).json().job
    const cancelled = await post(`/v1/jobs/${job.id}/cancel`, storeA, {})
    expect(cancelled.statusCode).toBe(200)
    expect(cancelled.json().job).toMatchObject({ id: job.id, state: 'cancelled' })
    expect(cancelled.json().job.finishedAt).not.toBeNull()
    const retried = await post(`/v1/jobs/${job.id}/retry`, storeA, {})
    expect(retried.statusCode).toBe(200)
    expect(retried.json().job).toMatchObject({ id: job.id, state: 'pending' })
  })

  it('answers 409 invalid_state for a retry of a live job', async () => {
    const job = (await post('/v1/jobs', storeA, { type: 'system.canary', payload: {} })).json().job
    const res = await post(`/v1/jobs/${job.id}/retry`, storeA, {})
    expect(res.statusCode).toBe(409)
    expect(res.json().error).toMatchObject({ code: 'invalid_state', details: { jobId: job.id, state: 'pending' } })
  })

  it('requests cancellation of a running job: 200, still running until the worker stops it', async () => {
    const job = (await post('/v1/jobs', storeA, { type: 'system.canary', payload: {} })).json().job
    await t.db.pool.query(`update jobs set state = 'running', attempt = 1, started_at = now(), lease_token = gen_random_uuid(), locked_by = 'w', locked_until = now() + interval '1 minute' where id = $1`, [job.id])
    const res = await post(`/v1/jobs/${job.id}/cancel`, storeA, {})
    expect(res.statusCode).toBe(200)
    expect(res.json().job.state).toBe('running')
    const { rows } = await t.db.pool.query('select cancel_requested from jobs where id = $1', [job.id])
    expect(rows[0].cancel_requested).toBe(true)
  })

  it('answers 404 for unknown jobs', async () => {
    expect((await post('/v1/jobs/424242424/cancel', storeA, {})).statusCode).toBe(404)
    expect((await post('/v1/jobs/424242424/retry', storeA, {})).statusCode).toBe(404)
  })
})
