import { createApiKey, enqueue, setStoreLiveJobCap } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
let app: FastifyInstance
let keyA: string
/** Store b's jobs, one per state a store key might try to touch. */
let pendingB: string, runningB: string, cancelledB: string
/** An id no job has. */
const NOBODY = '987654321'


beforeAll(async () => {
  app = await testApp({ db: t.db, batchLimit: 100, storeRate: 1_000 })
  keyA = (await createApiKey(t.db.kysely, { storeId: 'store-a' })).key
  const db = t.db.kysely
  await enqueue(db, { type: 'system.canary', storeId: 'store-a', payload: {} })
  pendingB = (await enqueue(db, { type: 'system.canary', storeId: 'store-b', payload: {}, dedupeKey: 'b-key' })).job.id
  runningB = (await enqueue(db, { type: 'system.canary', storeId: 'store-b', payload: {} })).job.id
  cancelledB = (await enqueue(db, { type: 'system.canary', storeId: 'store-b', payload: {} })).job.id
  await t.db.pool.query(
    `update jobs set state = 'running', attempt = 1, started_at = now(), lease_token = gen_random_uuid(), locked_by = 'w', locked_until = now() + interval '1 minute' where id = $1`,
    [runningB],
  )
  await t.db.pool.query(
    `with gone as (delete from jobs where id = $1 returning *)
     insert into job_history (id, type, queue, store_id, user_id, priority, state, attempt, max_attempts, payload, dedupe_key, progress, errors, result, run_at, created_at, started_at, finished_at)
     select id, type, queue, store_id, user_id, priority, 'cancelled', attempt, max_attempts, payload, dedupe_key, progress, errors, null, run_at, created_at, started_at, now() from gone`,
    [cancelledB],
  )
})
afterAll(async () => {
  await app?.close()
})

/** Every column a request could change, for every job: the "no row changes" check. */
async function snapshot(): Promise<unknown[]> {
  const { rows } = await t.db.pool.query(`
    select id, store_id, state, attempt, cancel_requested::text as c, run_at from jobs
    union all select id, store_id, state, attempt, 'history', run_at from job_history
    order by id`)
  return rows
}

const asA = (method: 'GET' | 'POST', url: string, payload?: object) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${keyA}` }, ...(payload ? { payload } : {}) })

/** A response with the requested id taken out, so "another store's job" compares with "no such job". */
function shape(res: LightMyRequestResponse, id: string): { status: number; body: string } {
  return { status: res.statusCode, body: res.body.split(id).join('<id>') }
}

describe('a store key and another store\'s jobs', () => {
  for (const [name, route] of [
    ['get', (id: string) => asA('GET', `/v1/jobs/${id}`)],
    ['cancel', (id: string) => asA('POST', `/v1/jobs/${id}/cancel`, {})],
    ['retry', (id: string) => asA('POST', `/v1/jobs/${id}/retry`, {})],
  ] as const) {
    it(`${name}: answers exactly as for a job that does not exist, and changes no row`, async () => {
      const before = await snapshot()
      const missing = shape(await route(NOBODY), NOBODY)
      expect(missing.status).toBe(404)
      for (const id of [pendingB, runningB, cancelledB]) {
        expect(shape(await route(id), id), `job ${id}`).toEqual(missing)
      }
      expect(await snapshot()).toEqual(before)
    })
  }

  it('list: never shows another store\'s jobs; naming that store answers as a store without jobs', async () => {
    const own = (await asA('GET', '/v1/jobs')).json()
    expect(own.jobs.length).toBe(1)
    expect(own.jobs.every((j: { storeId: string }) => j.storeId === 'store-a')).toBe(true)
    const other = await asA('GET', '/v1/jobs?storeId=store-b')
    const nobody = await asA('GET', '/v1/jobs?storeId=store-nobody')
    expect({ status: other.statusCode, body: other.body }).toEqual({ status: 200, body: nobody.body })
    expect(other.json()).toEqual({ jobs: [], nextCursor: null })
    // Filters that match only store b's jobs find nothing either.
    expect((await asA('GET', '/v1/jobs?state=running')).json().jobs).toEqual([])
    expect((await asA('GET', '/v1/jobs?state=cancelled')).json().jobs).toEqual([])
  })

  it('enqueue naming another store: answers as naming a store that does not exist, and writes nothing', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'store-b', 1)
    const before = await snapshot()
    for (const url of ['/v1/jobs', '/v1/jobs/batch']) {
      const wrap = (storeId: string) => {
        const item = { type: 'system.canary', payload: {}, storeId, dedupeKey: 'b-key' }
        return url === '/v1/jobs' ? item : { jobs: [item] }
      }
      const other = await asA('POST', url, wrap('store-b'))
      const nobody = await asA('POST', url, wrap('store-nobody'))
      expect(other.statusCode).toBe(400)
      expect({ status: other.statusCode, body: other.body }).toEqual({ status: nobody.statusCode, body: nobody.body })
    }
    expect(await snapshot()).toEqual(before)
  })
})
