import { readdir, readFile } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { cancelJob, createApiKey, enqueue, STORE_ROLE, type Db } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, type AppDeps } from '../src/app.ts'

const t = useTestDatabase()
let platform: string
let keyA: string
let pendingA: string, pendingB: string, cancelledA: string, cancelledB: string

beforeAll(async () => {
  const db = t.db.kysely
  platform = (await createApiKey(db, { storeId: null })).key
  keyA = (await createApiKey(db, { storeId: 'store-a' })).key
  pendingA = (await enqueue(db, { type: 'system.canary', storeId: 'store-a', payload: {} })).job.id
  pendingB = (await enqueue(db, { type: 'system.canary', storeId: 'store-b', payload: {} })).job.id
  cancelledA = (await cancelJob(db, (await enqueue(db, { type: 'system.canary', storeId: 'store-a', payload: {} })).job.id)).id
  cancelledB = (await cancelJob(db, (await enqueue(db, { type: 'system.canary', storeId: 'store-b', payload: {} })).job.id)).id
})

/** What the test-only route saw: who ran its statements, and what unfiltered reads returned. */
interface Seen {
  readonly user: string
  readonly role: string
  readonly jobs: string[]
  readonly history: string[]
  readonly stores: string[]
}

/**
 * The real app, plus a route that does what a careless route would: reads
 * every table with no store filter, through the same per-request helper the
 * real routes use. Under /v1, so the real auth hook and request gate apply.
 */
async function appWithCarelessRoute(deps: Partial<AppDeps> & { db: Db }): Promise<FastifyInstance> {
  const app = buildApp(deps)
  app.get('/v1/test-only/unfiltered', async (request): Promise<Seen> =>
    request.withDb(async (db) => {
      // `pg_catalog.current_user()`: the qualified name lets a builder call what SQL spells as a keyword.
      const who = await db
        .selectNoFrom((eb) => [eb.fn<string>('pg_catalog.current_user').as('user'), eb.fn<string>('current_setting', [eb.val('role')]).as('role')])
        .executeTakeFirstOrThrow()
      const ids = (rows: ReadonlyArray<{ store_id: string }>) => [...new Set(rows.map((r) => r.store_id))].sort()
      return {
        ...who,
        jobs: ids(await db.selectFrom('jobs').select('store_id').execute()),
        history: ids(await db.selectFrom('job_history').select('store_id').execute()),
        stores: ids(await db.selectFrom('stores').select('store_id').execute()),
      }
    }),
  )
  await app.ready()
  return app
}

const as = (key: string) => ({ authorization: `Bearer ${key}` })

describe('a store key request', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await appWithCarelessRoute({ db: t.db, storeRate: 1_000 })
  })
  afterAll(async () => {
    await app?.close()
  })

  it('runs its database work as the store role and sees only its store, though the query forgot the filter', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/test-only/unfiltered', headers: as(keyA) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ user: STORE_ROLE, role: STORE_ROLE, jobs: ['store-a'], history: ['store-a'], stores: ['store-a'] })
  })

  it('a platform key request runs as the login and sees every store', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/test-only/unfiltered', headers: as(platform) })
    expect(res.statusCode).toBe(200)
    const seen = res.json<Seen>()
    expect(seen.user).not.toBe(STORE_ROLE)
    expect(seen.role).toBe('none')
    expect(seen).toMatchObject({ jobs: ['store-a', 'store-b'], history: ['store-a', 'store-b'], stores: ['store-a', 'store-b'] })
  })
})

describe('every route acting for a store key', () => {
  // A restrictive policy for the store role only hides marked rows of store
  // a: a route that answers as if they were not there ran as the role; run
  // as the login (the tables' owner), it would see them. The marked jobs are
  // this test's own; the policies exist in this file's database only.
  let app: FastifyInstance
  let hiddenLive: string, hiddenDone: string
  beforeAll(async () => {
    const db = t.db.kysely
    hiddenLive = (await enqueue(db, { type: 'system.canary', storeId: 'store-a', payload: { sleepMs: 13 } })).job.id
    hiddenDone = (await cancelJob(db, (await enqueue(db, { type: 'system.canary', storeId: 'store-a', payload: { sleepMs: 13 } })).job.id)).id
    for (const table of ['jobs', 'job_history']) {
      await t.db.pool.query(`create policy test_hide_marked on ${table} as restrictive to ${STORE_ROLE}
                             using (payload->>'sleepMs' is distinct from '13') with check (payload->>'sleepMs' is distinct from '13')`)
    }
    app = await appWithCarelessRoute({ db: t.db, storeRate: 1_000 })
  })
  afterAll(async () => {
    await app?.close()
    for (const table of ['jobs', 'job_history']) await t.db.pool.query(`drop policy if exists test_hide_marked on ${table}`)
  })

  const call = (key: string, method: 'GET' | 'POST', url: string, payload?: object) =>
    app.inject({ method, url, headers: as(key), ...(payload === undefined ? {} : { payload }) })

  it('reads: get, list and stats do not see the hidden rows', async () => {
    expect((await call(keyA, 'GET', `/v1/jobs/${hiddenLive}`)).statusCode).toBe(404)
    expect((await call(keyA, 'GET', `/v1/jobs/${hiddenDone}`)).statusCode).toBe(404)
    expect((await call(keyA, 'GET', `/v1/jobs/${pendingA}`)).statusCode).toBe(200)
    const listed = (await call(keyA, 'GET', '/v1/jobs?limit=100')).json<{ jobs: Array<{ id: string }> }>().jobs.map((j) => j.id)
    expect(listed).toContain(pendingA)
    expect(listed).toContain(cancelledA)
    expect(listed).not.toContain(hiddenLive)
    expect(listed).not.toContain(hiddenDone)
    const stats = (await call(keyA, 'GET', '/v1/stats')).json<{ overall: { pending: number } }>()
    const { rows } = await t.db.pool.query(`select count(*)::int as n from jobs where store_id = 'store-a' and state = 'pending'`)
    expect(stats.overall.pending).toBe(rows[0].n - 1)
  })

  it('writes: cancel, retry and enqueue meet the role\'s policies', async () => {
    expect((await call(keyA, 'POST', `/v1/jobs/${hiddenLive}/cancel`, {})).statusCode).toBe(404)
    expect((await call(keyA, 'POST', `/v1/jobs/${hiddenDone}/retry`, {})).statusCode).toBe(404)
    // The policy's WITH CHECK refuses the marked row: only a statement run as the role meets it.
    const marked = { type: 'system.canary', payload: { sleepMs: 13 } }
    expect((await call(keyA, 'POST', '/v1/jobs', marked)).statusCode).toBe(500)
    expect((await call(keyA, 'POST', '/v1/jobs/batch', { jobs: [marked] })).statusCode).toBe(500)
    expect((await call(platform, 'POST', '/v1/jobs', { ...marked, storeId: 'store-a' })).statusCode).toBe(201)
    // Unmarked work of the store goes through.
    expect((await call(keyA, 'POST', '/v1/jobs', { type: 'system.canary', payload: {} })).statusCode).toBe(201)
  })

  it('the platform key sees the hidden rows (it runs as the login)', async () => {
    expect((await call(platform, 'GET', `/v1/jobs/${hiddenLive}`)).statusCode).toBe(200)
    expect((await call(platform, 'GET', `/v1/jobs/${hiddenDone}`)).statusCode).toBe(200)
  })

  it('store b stays out of reach whatever the route', async () => {
    expect((await call(keyA, 'GET', `/v1/jobs/${pendingB}`)).statusCode).toBe(404)
    expect((await call(keyA, 'POST', `/v1/jobs/${cancelledB}/retry`, {})).statusCode).toBe(404)
  })
})

describe('where row security is not in effect', () => {
  it('the app warns at start-up with a code, and store requests still run on their filters', async () => {
    const lines: Array<Record<string, unknown>> = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line))
        done()
      },
    })
    const app = await appWithCarelessRoute({ db: t.db, storeRate: 1_000, logger: pino({ level: 'info' }, sink), storeRole: 'backroom_no_such_role' })
    try {
      const warning = lines.find((l) => l.code === 'row_security_off')
      expect(warning).toMatchObject({ level: 40, gap: 'role_missing' })
      expect(String(warning!.detail)).toContain('backroom_no_such_role')
      const seen = (await app.inject({ method: 'GET', url: '/v1/test-only/unfiltered', headers: as(keyA) })).json<Seen>()
      // The careless route now sees every store: only the filters of the real routes protect.
      expect(seen.jobs).toEqual(['store-a', 'store-b'])
      expect((await app.inject({ method: 'GET', url: `/v1/jobs/${pendingB}`, headers: as(keyA) })).statusCode).toBe(404)
      expect((await app.inject({ method: 'POST', url: '/v1/jobs', headers: as(keyA), payload: { type: 'system.canary', payload: {} } })).statusCode).toBe(201)
    } finally {
      await app.close()
    }
  })

  it('in effect, the app says so at start-up', async () => {
    const lines: Array<Record<string, unknown>> = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line))
        done()
      },
    })
    const app = await appWithCarelessRoute({ db: t.db, logger: pino({ level: 'info' }, sink) })
    try {
      expect(lines.find((l) => l.msg === 'store row security in effect')).toBeDefined()
      expect(lines.find((l) => l.code === 'row_security_off')).toBeUndefined()
    } finally {
      await app.close()
    }
  })
})

describe('route plugins under /v1', () => {
  /** Files that may use the pool directly, and why. */
  const DIRECT = new Map([
    ['keys.ts', 'platform keys only: a store key gets 403 before any database work'],
    ['uploads.ts', 'feed uploads write the shop schema, which has no store row security yet (README, Reliability)'],
  ])

  it('reach the database only through request.withDb (or are listed here with a reason)', async () => {
    const dir = new URL('../src/routes/v1/', import.meta.url)
    const files = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    expect(files).toContain('jobs.ts')
    for (const file of files) {
      if (DIRECT.has(file)) continue
      const text = await readFile(new URL(file, dir), 'utf8')
      expect(text, `${file} uses the pool directly; run its database work through request.withDb`).not.toMatch(/options\.db\b|\.kysely\b|\.pool\b/)
      expect(text, `${file} has no request.withDb`).toMatch(/request\.withDb\(/)
    }
  })
})
