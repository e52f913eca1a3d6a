import { connect, createApiKey, enqueueMany } from '@backroom/queue-core'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, type AppDeps } from '../src/app.ts'

/** Room for every scrape to hold its own connection, so a missing coalescing shows as many statements. */
const t = useTestDatabase({ poolMax: 50 })
const SCRAPES = 40
const METRICS_KEY = 'a-metrics-key-of-enough-length'
const cleanups: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  await enqueueMany(t.db.kysely, [
    { type: 'mc.depth', storeId: 's1', payload: {} },
    { type: 'mc.depth', storeId: 's2', payload: {} },
  ])
})
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

/** An app with its metrics settings, counting the requests that reached the /metrics handler. */
async function metricsApp(deps: Partial<AppDeps>): Promise<{ app: FastifyInstance; arrived: () => number }> {
  const app = buildApp({ db: t.db, ...deps })
  let arrived = 0
  app.addHook('preHandler', async (request) => {
    if (request.routeOptions.url === '/metrics') arrived++
  })
  await app.ready()
  cleanups.push(() => app.close())
  return { app, arrived: () => arrived }
}

/**
 * Holds an ACCESS EXCLUSIVE lock on `jobs` from a connection of its own, so
 * every statement reading the table waits, visibly, in pg_stat_activity.
 */
async function lockJobs(): Promise<{ release: () => Promise<void> }> {
  const own = connect({ connectionString: t.url, max: 1 })
  const client = await own.pool.connect()
  await client.query('begin')
  await client.query('lock table jobs in access exclusive mode')
  let released = false
  const release = async () => {
    if (released) return
    released = true
    await client.query('commit')
    client.release()
    await own.close()
  }
  cleanups.push(release)
  return { release }
}

/** Statements of this database waiting for a lock on `jobs` (the figures read, while lockJobs holds it). */
async function waitingOnJobs(): Promise<number> {
  const { rows } = await t.db.pool.query(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and query ilike '%from jobs%'`,
  )
  return rows[0].n as number
}

const scrape = (app: FastifyInstance, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/metrics', headers })
const depth = (res: LightMyRequestResponse) => /^backroom_queue_jobs\{type="mc.depth",state="pending"\} (\d+)$/m.exec(res.body)?.[1] ?? null
const reads = (res: LightMyRequestResponse) => Number(/^backroom_queue_figures_reads_total (\d+)$/m.exec(res.body)?.[1] ?? Number.NaN)

describe('GET /metrics queue figures', () => {
  it('runs one database read for many concurrent scrapes', async () => {
    const { app, arrived } = await metricsApp({ metricsCacheMs: 60_000 })
    const lock = await lockJobs()
    const scrapes = Array.from({ length: SCRAPES }, () => scrape(app))
    // Every scrape has reached the handler, and a read is waiting on the lock.
    await waitFor(() => arrived() === SCRAPES, { what: 'every scrape to reach the handler' })
    await waitFor(async () => (await waitingOnJobs()) >= 1, { what: 'the figures read to wait on the lock' })
    // Each scrape would have taken its pool connection by now (pg-pool counts a client as it creates it).
    await new Promise((resolve) => setImmediate(resolve))
    expect(t.db.pool.totalCount - t.db.pool.idleCount).toBe(1)
    expect(await waitingOnJobs()).toBe(1)
    await lock.release()
    const answers = await Promise.all(scrapes)
    for (const res of answers) {
      expect(res.statusCode).toBe(200)
      expect(depth(res)).toBe('2')
    }
    expect(reads(answers[0]!)).toBe(1)
  })

  // A read that is not cached or not bounded waits on the lock: a short test timeout turns that into a quick failure.
  it('answers from the figures it read while they are fresh, without touching the database', { timeout: 20_000 }, async () => {
    const { app } = await metricsApp({ metricsCacheMs: 60_000 })
    expect(depth(await scrape(app))).toBe('2')
    // With the table locked, any read of it would hang: every answer here came from the cache.
    await lockJobs()
    const answers = await Promise.all(Array.from({ length: SCRAPES }, () => scrape(app)))
    for (const res of answers) expect(depth(res)).toBe('2')
    expect(reads(answers[0]!)).toBe(1)
    expect(await waitingOnJobs()).toBe(0)
  })

  it('reads again once the cache window has passed', async () => {
    const { app } = await metricsApp({ metricsCacheMs: 200 })
    expect(depth(await scrape(app))).toBe('2')
    await enqueueMany(t.db.kysely, [{ type: 'mc.depth', storeId: 's3', payload: {} }])
    await waitFor(async () => depth(await scrape(app)) === '3', { what: 'the new job in the figures' })
    await t.db.pool.query(`delete from jobs where store_id = 's3'`)
  })

  it('bounds the read with a statement timeout: a stuck read answers without figures and counts an error', { timeout: 20_000 }, async () => {
    const { app } = await metricsApp({ metricsCacheMs: 0, metricsQueryTimeoutMs: 300 })
    const lock = await lockJobs()
    // Without the timeout the read would wait for the lock (released only after this answer).
    const res = await scrape(app)
    expect(res.statusCode).toBe(200)
    expect(res.body).toMatch(/^backroom_queue_stats_errors_total 1$/m)
    expect(depth(res)).toBeNull()
    // The server cancelled the statement: nothing is left waiting on the table.
    expect(await waitingOnJobs()).toBe(0)
    await lock.release()
    expect(depth(await scrape(app))).toBe('2')
  })
})

describe('GET /metrics with METRICS_KEY', () => {
  it('refuses a scrape without the metrics key (401), and answers with it', async () => {
    const { app } = await metricsApp({ metricsKey: METRICS_KEY })
    const storeKey = (await createApiKey(t.db.kysely, { storeId: 'store-m' })).key
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-key' }, { authorization: `Bearer ${storeKey}` }, { authorization: METRICS_KEY }]) {
      const res = await scrape(app, headers)
      expect(res.statusCode).toBe(401)
      expect(res.headers['www-authenticate']).toBe('Bearer')
      expect(res.json().error.code).toBe('unauthorized')
      expect(res.body).not.toContain('backroom_')
    }
    const res = await scrape(app, { authorization: `Bearer ${METRICS_KEY}` })
    expect(res.statusCode).toBe(200)
    expect(depth(res)).toBe('2')
    // Also however the route is spelled.
    expect((await app.inject({ method: 'GET', url: '/%6Detrics' })).statusCode).toBe(401)
  })

  it('says so in the OpenAPI document', async () => {
    const { app } = await metricsApp({ metricsKey: METRICS_KEY })
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
    expect(doc.paths['/metrics'].get.security).toEqual([{ metricsKey: [] }])
  })
})

afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})
