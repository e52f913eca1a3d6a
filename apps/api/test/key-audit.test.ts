import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { connect, createApiKey, recordApiKeyUses, revokeApiKey, type CreatedApiKey } from '@backroom/queue-core'
import { REDACT_PATHS } from '@backroom/queue-core/runtime'
import { startTcpProxy, useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { beforeAll, describe, expect, it } from 'vitest'
import { createKeyUseAudit } from '../src/key-use-audit.ts'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
const ADMIN = `admin-${randomBytes(24).toString('base64url')}`
const PREVIOUS = `previous-${randomBytes(24).toString('base64url')}`
/** Every log line of every app in this file, to prove no secret reaches them. */
const logLines: string[] = []
const tokens: string[] = [ADMIN, PREVIOUS]

function capturingLogger() {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      done()
    },
  })
  return pino({ level: 'debug', redact: [...REDACT_PATHS] }, sink)
}

async function newKey(storeId: string | null): Promise<CreatedApiKey> {
  const created = await createApiKey(t.db.kysely, { storeId, actor: 'cli' })
  tokens.push(created.key)
  return created
}

async function usesByKey(): Promise<Record<string, { uses: number; storeId: string | null }>> {
  const { rows } = await t.db.pool.query<{ key_id: string; store_id: string | null; uses: number }>(
    `select key_id, min(store_id) as store_id, sum(uses)::int as uses from api_key_audit where event = 'used' group by key_id`,
  )
  return Object.fromEntries(rows.map((r) => [r.key_id, { uses: r.uses, storeId: r.store_id }]))
}

async function inPool<T>(items: ReadonlyArray<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < items.length) await work(items[next++]!)
  }
  await Promise.all(Array.from({ length: limit }, lane))
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

let platform: CreatedApiKey
let storeA: CreatedApiKey
let storeB: CreatedApiKey
let revoked: CreatedApiKey

beforeAll(async () => {
  platform = await newKey(null)
  storeA = await newKey('store-a')
  storeB = await newKey('store-b')
  revoked = await newKey('store-a')
  await revokeApiKey(t.db.kysely, revoked.keyId, { actor: 'cli' })
})

describe('key use audit', () => {
  it('counts every authenticated request exactly, per key, under concurrent requests from several keys, and writes nothing for refused keys', async () => {
    // A short interval: many flushes race the requests, as they would over hours.
    const app = await testApp({ db: t.db, logger: capturingLogger(), adminKey: ADMIN, previousAdminKey: PREVIOUS, keyUseFlushMs: 5, storeRate: 100_000 })
    const callers = [
      { id: platform.keyId, token: platform.key, n: 37, storeId: null },
      { id: storeA.keyId, token: storeA.key, n: 23, storeId: 'store-a' },
      { id: storeB.keyId, token: storeB.key, n: 41, storeId: 'store-b' },
      { id: 'admin', token: ADMIN, n: 19, storeId: null },
      { id: 'admin-previous', token: PREVIOUS, n: 29, storeId: null },
    ]
    // Answers of every kind count: a 200, a 404, a 400 on a body the key was allowed to send.
    const routes = [
      { method: 'GET' as const, url: '/v1/jobs?limit=1' },
      { method: 'GET' as const, url: '/v1/jobs/987654321' },
      { method: 'POST' as const, url: '/v1/jobs', payload: { type: 'no.such-type', payload: {} } },
    ]
    const requests = callers.flatMap((c) => Array.from({ length: c.n }, (_, i) => ({ token: c.token, ...routes[i % routes.length]! })))
    // Refused: no audit row may come of these.
    for (let i = 0; i < 15; i++) requests.push({ token: i % 2 ? revoked.key : `brk_${storeA.keyId}_${'x'.repeat(43)}`, ...routes[0]! })
    const statuses: number[] = []
    await inPool(requests, 12, async (r) => {
      const res = await app.inject({ method: r.method, url: r.url, headers: bearer(r.token), ...('payload' in r ? { payload: r.payload } : {}) })
      statuses.push(res.statusCode)
    })
    expect(statuses.filter((s) => s === 401)).toHaveLength(15)
    expect(statuses.filter((s) => s >= 500)).toEqual([])

    const expected = Object.fromEntries(callers.map((c) => [c.id, { uses: c.n, storeId: c.storeId }]))
    // The periodic flush writes everything without waiting for close…
    await waitFor(async () => equal(await usesByKey(), expected), { timeoutMs: 10_000, what: 'the periodic flush to write every use' })
    // …and closing writes nothing twice.
    await app.close()
    expect(await usesByKey()).toEqual(expected)
    expect(await usesByKey()).not.toHaveProperty(revoked.keyId)

    // A clean stop loses nothing: no periodic flush at all, every use is written at close.
    const quiet = await testApp({ db: t.db, logger: capturingLogger(), adminKey: ADMIN, keyUseFlushMs: null })
    await inPool(Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? ADMIN : storeA.key)), 8, async (token) => {
      expect((await quiet.inject({ method: 'GET', url: '/v1/jobs?limit=1', headers: bearer(token) })).statusCode).toBe(200)
    })
    expect((await usesByKey()).admin!.uses).toBe(19)
    await quiet.close()
    const after = await usesByKey()
    expect(after.admin!.uses).toBe(19 + 10)
    expect(after[storeA.keyId]!.uses).toBe(23 + 20)
  })

  it('counts a request still being authenticated when the API closes: the last flush runs after the last answer', async () => {
    const app = await testApp({ db: t.db, logger: capturingLogger(), keyUseFlushMs: null })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    const before = (await usesByKey())[storeB.keyId]?.uses ?? 0
    // Holding api_keys locked stalls the request inside the auth hook's key lookup, before it is counted.
    const blocker = await t.db.pool.connect()
    try {
      await blocker.query('begin')
      await blocker.query('lock table api_keys in access exclusive mode')
      const answer = fetch(`http://127.0.0.1:${port}/v1/jobs?limit=1`, { headers: bearer(storeB.key) }).then((r) => r.status)
      await waitFor(
        async () => (await t.db.pool.query(`select 1 from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'api_keys' and not l.granted`)).rowCount! > 0,
        { what: 'the request to wait on the key lookup' },
      )
      const closed = app.close()
      await blocker.query('commit')
      expect(await answer).toBe(200)
      await closed
    } finally {
      blocker.release()
    }
    expect((await usesByKey())[storeB.keyId]!.uses).toBe(before + 1)
  })

  it('keeps counts a failed flush could not write, and writes them once the database answers', async () => {
    const target = new URL(t.url)
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
    const db = connect({ connectionString: proxy.urlFor(t.url), max: 1, acquireTimeoutMs: 1_000, statementTimeoutMs: 1_000 })
    const uses = createKeyUseAudit({ db, log: capturingLogger(), flushIntervalMs: null })
    try {
      const before = (await usesByKey())[storeB.keyId]?.uses ?? 0
      for (let i = 0; i < 7; i++) uses.record(storeB.keyId, 'store-b')
      proxy.cutAll()
      await proxy.refuse(true)
      await expect(uses.flush()).rejects.toThrow()
      expect(uses.pending()).toBe(7)
      for (let i = 0; i < 5; i++) uses.record(storeB.keyId, 'store-b')
      await proxy.refuse(false)
      expect(await uses.flush()).toBe(12)
      expect(uses.pending()).toBe(0)
      expect((await usesByKey())[storeB.keyId]!.uses).toBe(before + 12)
    } finally {
      await uses.stop()
      await db.close()
      await proxy.close()
    }
  })

  it('deletes audit rows past API_KEY_AUDIT_RETENTION_DAYS with its periodic sweep', async () => {
    const hourStart = (msAgo: number) => new Date(Math.floor((Date.now() - msAgo) / 3_600_000) * 3_600_000)
    const row = (keyId: string, hour: Date) => ({ keyId, storeId: null, hour, uses: 1, firstUsedAt: hour, lastUsedAt: hour })
    await recordApiKeyUses(t.db.kysely, [row('777777', hourStart(3 * 86_400_000)), row('777777', hourStart(86_400_000 / 2))])
    const app = await testApp({ db: t.db, keyAuditRetentionDays: 2, keyAuditSweepIntervalMs: 50 })
    try {
      await waitFor(
        async () => (await t.db.pool.query(`select 1 from api_key_audit where key_id = '777777' and at < now() - interval '2 days'`)).rowCount === 0,
        { timeoutMs: 10_000, what: 'the sweep to delete the old row' },
      )
      const { rows } = await t.db.pool.query(`select at from api_key_audit where key_id = '777777' and at > now() - interval '1 day'`)
      expect(rows).toHaveLength(1)
    } finally {
      await app.close()
    }
  })
})

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b))
}
function sortKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => [k, sortKeys(v)]))
}

describe('GET /v1/keys/:id/events', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await testApp({ db: t.db, logger: capturingLogger(), adminKey: ADMIN, previousAdminKey: PREVIOUS, keyUseFlushMs: null })
    return () => app.close()
  })
  const get = (url: string, token: string) => app.inject({ method: 'GET', url, headers: bearer(token) })

  it('shows who created and revoked a key through the API, and its hourly uses, newest first in pages', async () => {
    const byPlatform = (await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(platform.key), payload: { storeId: 'store-e' } })).json()
    const byAdmin = (await app.inject({ method: 'POST', url: '/v1/keys', headers: bearer(ADMIN), payload: {} })).json()
    tokens.push(byPlatform.key, byAdmin.key)
    for (let i = 0; i < 3; i++) expect((await get('/v1/jobs?limit=1', byPlatform.key)).statusCode).toBe(200)
    expect((await app.inject({ method: 'DELETE', url: `/v1/keys/${byPlatform.id}`, headers: bearer(PREVIOUS) })).statusCode).toBe(204)
    expect((await app.inject({ method: 'DELETE', url: `/v1/keys/${byAdmin.id}`, headers: bearer(byAdmin.key) })).statusCode).toBe(204)
    // Revoked: the very next request with the key is refused.
    expect((await get('/v1/jobs?limit=1', byAdmin.key)).statusCode).toBe(401)
    expect((await get('/v1/jobs?limit=1', byPlatform.key)).statusCode).toBe(401)
    // This app counted the uses; closing it writes them. The next app reads them.
    await app.close()
    app = await testApp({ db: t.db, logger: capturingLogger(), adminKey: ADMIN, previousAdminKey: PREVIOUS, keyUseFlushMs: null })

    type View = { event: string; keyId: string; storeId: string | null; actor: string | null; at: string; uses: number | null; firstUsedAt: string | null; lastUsedAt: string | null }
    /** Every page of a key's events, one row per page (the cursor is exercised at each step). */
    const allEvents = async (id: string): Promise<View[]> => {
      const events: View[] = []
      let cursor: string | null = null
      do {
        const res = await get(`/v1/keys/${id}/events?limit=1${cursor ? `&cursor=${cursor}` : ''}`, ADMIN)
        expect(res.statusCode, res.body).toBe(200)
        const page = res.json() as { events: View[]; nextCursor: string | null }
        expect(page.events.length).toBe(1)
        events.push(...page.events)
        cursor = page.nextCursor
      } while (cursor !== null)
      const at = events.map((e) => Date.parse(e.at))
      expect(at, 'newest first').toEqual([...at].sort((x, y) => y - x))
      return events
    }
    const platformMade = await allEvents(byPlatform.id)
    // A use row sorts at its hour's start, before the key's creation unless an hour began in between.
    const byEvent = (events: View[]) => Object.fromEntries(events.map((e) => [e.event, e]))
    expect(byEvent(platformMade)).toEqual({
      revoked: { event: 'revoked', keyId: byPlatform.id, storeId: 'store-e', actor: 'admin-previous', at: expect.any(String), uses: null, firstUsedAt: null, lastUsedAt: null },
      created: { event: 'created', keyId: byPlatform.id, storeId: 'store-e', actor: platform.keyId, at: expect.any(String), uses: null, firstUsedAt: null, lastUsedAt: null },
      used: { event: 'used', keyId: byPlatform.id, storeId: 'store-e', actor: null, at: expect.stringMatching(/T\d\d:00:00\.000Z$/), uses: 3, firstUsedAt: expect.any(String), lastUsedAt: expect.any(String) },
    })
    expect(platformMade).toHaveLength(3)
    expect(platformMade[0]!.event).toBe('revoked')
    const adminMade = await allEvents(byAdmin.id)
    expect(adminMade.map((e) => [e.event, e.actor, e.uses]).sort()).toEqual([
      ['created', 'admin', null],
      ['revoked', byAdmin.id, null],
      ['used', null, 1],
    ])
    // The admin keys have their own use history under their names.
    const adminUses = (await get('/v1/keys/admin/events', platform.key)).json().events
    expect(adminUses.length).toBeGreaterThan(0)
    expect(adminUses.every((e: { event: string; storeId: string | null }) => e.event === 'used' && e.storeId === null)).toBe(true)
  })

  it('answers 404 for an unknown key, 403 to a store key, 400 for a bad limit or cursor, 401 without a key', async () => {
    for (const id of ['987654321', 'abc', '99999999999999999999']) {
      const res = await get(`/v1/keys/${id}/events`, platform.key)
      expect(res.statusCode, id).toBe(404)
      expect(res.json().error.code).toBe('key_not_found')
    }
    expect((await get(`/v1/keys/${storeA.keyId}/events`, storeA.key)).statusCode).toBe(403)
    for (const query of ['limit=0', 'limit=101', 'limit=1.5', 'cursor=not-a-cursor', 'since=1']) {
      const res = await get(`/v1/keys/${storeA.keyId}/events?${query}`, platform.key)
      expect(res.statusCode, query).toBe(400)
      expect(res.json().error).toMatchObject({ code: expect.any(String), message: expect.any(String) })
    }
    expect((await app.inject({ method: 'GET', url: `/v1/keys/${storeA.keyId}/events` })).statusCode).toBe(401)
    // A revoked key's history stays readable.
    const revokedEvents = (await get(`/v1/keys/${revoked.keyId}/events`, platform.key)).json().events
    expect(revokedEvents.map((e: { event: string; actor: string }) => [e.event, e.actor])).toEqual([
      ['revoked', 'cli'],
      ['created', 'cli'],
    ])
  })
})

describe('secrets', () => {
  it('never puts a token, its secret part or its hash in the audit table or the logs', async () => {
    const { rows: hashes } = await t.db.pool.query<{ hex: string; b64: string }>(
      `select encode(token_hash, 'hex') as hex, encode(token_hash, 'base64') as b64 from api_keys`,
    )
    const { rows } = await t.db.pool.query<{ dump: string }>(`select string_agg(row_to_json(a)::text, '\n') as dump from api_key_audit a`)
    const dump = rows[0]!.dump
    const logs = logLines.join('\n')
    expect(dump).toContain('"event":"used"')
    expect(logs).toContain('"keyId":"admin-previous"')
    const secrets = [...tokens, ...tokens.map((k) => k.replace(/^brk_\d+_/, '')), ...hashes.flatMap((h) => [h.hex, h.b64])]
    expect(secrets.length).toBeGreaterThan(20)
    for (const secret of secrets) {
      expect(dump.includes(secret), 'a secret in api_key_audit').toBe(false)
      expect(logs.includes(secret), 'a secret in the logs').toBe(false)
    }
  })
})
