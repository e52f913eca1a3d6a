import { createApiKey } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance, HTTPMethods } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
let app: FastifyInstance
let storeKey: string
/** Every route the app registers, as Fastify saw it (pattern, not URL). */
const routes: Array<{ method: HTTPMethods; url: string }> = []

beforeAll(async () => {
  app = buildApp({ db: t.db, cronSecret: 'a-cron-secret-of-enough-length' })
  app.addHook('onRoute', (route) => {
    for (const method of ([] as HTTPMethods[]).concat(route.method)) routes.push({ method, url: route.url })
  })
  await app.ready()
  storeKey = (await createApiKey(t.db.kysely, { storeId: 'store-auth' })).key
})
afterAll(async () => {
  await app?.close()
})

/** Rows a served write would leave behind. */
async function writes(): Promise<number> {
  const { rows } = await t.db.pool.query(`select (select count(*) from jobs)::int + (select count(*) from api_keys)::int as n`)
  return rows[0].n as number
}

/**
 * Spellings of `path` that a router may decode to the same route (or to
 * none): percent-escapes of plain letters and digits (either case of hex),
 * an escaped or doubled slash, a trailing slash, and upper case.
 */
function variants(path: string): string[] {
  const escape = (c: string, lower = false) => {
    const hex = c.charCodeAt(0).toString(16).toUpperCase()
    return `%${lower ? hex.toLowerCase() : hex}`
  }
  return [
    path.replace('/v1', `/${escape('v')}1`),
    path.replace('/v1', `/v${escape('1')}`),
    path.replace('/v1', `/${escape('v', true)}${escape('1', true)}`),
    // A letter of the resource part escaped too.
    path.replace(/^\/v1\/(.)/, (_m, c: string) => `/v1/${escape(c)}`),
    path.replace('/v1/', '/v1%2F'),
    path.replace('/v1/', '/v1%2f'),
    `/%2F${path.slice(1)}`,
    `/${path}`,
    path.replace('/v1/', '/v1//'),
    `${path}/`,
    `${path}%2F`,
    path.toUpperCase(),
    path.replace('/v1', '/V1'),
    path.replace('/v1', `/${escape('V')}1`),
    `${path}?`,
    `${path}?x=%00`,
  ]
}

/** The routes the auth hook must cover, with sample parameters filled in. */
function protectedRoutes(): Array<{ method: HTTPMethods; path: string }> {
  return routes
    .filter((r) => r.url.startsWith('/v1/') && !r.url.startsWith('/v1/internal/'))
    .map((r) => ({ method: r.method, path: r.url.replace(/:[A-Za-z0-9_]+/g, '1') }))
}

describe('authentication on the matched route', () => {
  it('covers a route reached through a percent-escaped prefix (/%761/jobs)', async () => {
    const res = await app.inject({ method: 'GET', url: '/%761/jobs' })
    expect(res.statusCode, res.body).toBe(401)
    expect(res.headers['www-authenticate']).toBe('Bearer')
    expect(res.json().error.code).toBe('unauthorized')
  })

  it('never serves a /v1 route without a key, and never answers 500, however the path is spelled', async () => {
    const covered = protectedRoutes()
    // The contract's routes are all among them (so the loop cannot pass by covering nothing).
    for (const path of ['/v1/jobs', '/v1/jobs/1', '/v1/jobs/batch', '/v1/jobs/1/cancel', '/v1/stats', '/v1/keys', '/v1/uploads']) {
      expect(covered.map((r) => r.path)).toContain(path)
    }
    const before = await writes()
    const problems: string[] = []
    for (const { method, path } of covered) {
      for (const url of [path, ...variants(path)]) {
        for (const headers of [{}, { authorization: 'Bearer not-a-key' }]) {
          const res = await app.inject({ method, url, headers, ...(method === 'POST' ? { payload: {} } : {}) })
          // 401 when the spelling reaches the route; 404 when it reaches none; 400 for a URL the router cannot decode.
          if (![400, 401, 404].includes(res.statusCode)) problems.push(`${method} ${url} ${JSON.stringify(headers)} → ${res.statusCode}`)
        }
      }
    }
    expect(problems).toEqual([])
    expect(await writes()).toBe(before)
  })

  it('serves an escaped spelling of a route to a valid key as the plain one', async () => {
    const auth = { authorization: `Bearer ${storeKey}` }
    const plain = await app.inject({ method: 'GET', url: '/v1/jobs', headers: auth })
    expect(plain.statusCode).toBe(200)
    for (const url of ['/%761/jobs', '/v%31/jobs', '/v1/%6Aobs', '/%76%31/%6a%6f%62%73']) {
      const res = await app.inject({ method: 'GET', url, headers: auth })
      expect(res.statusCode, url).toBe(200)
      expect(res.json()).toEqual(plain.json())
    }
    // Every escaped spelling of every route: never a 500 with a valid key either.
    const problems: string[] = []
    for (const { method, path } of protectedRoutes()) {
      for (const url of variants(path)) {
        const res = await app.inject({ method, url, headers: auth, ...(method === 'POST' ? { payload: {} } : {}) })
        if (res.statusCode >= 500) problems.push(`${method} ${url} → ${res.statusCode}`)
      }
    }
    expect(problems).toEqual([])
  })

  it('answers 404 for unknown routes, with or without a key, and leaves public routes public', async () => {
    for (const url of ['/v1/nope', '/%761/nope', '/v2/jobs']) {
      expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(404)
      expect((await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${storeKey}` } })).statusCode, url).toBe(404)
    }
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/%68ealthz' })).statusCode).toBe(200)
  })

  it('leaves /v1/internal to its own secret, however it is spelled', async () => {
    for (const url of ['/v1/internal/process-pending', '/%761/internal/process-pending', '/v1/%69nternal/process-pending']) {
      // A store key is no cron secret: the route's own check refuses it (401), not the key auth.
      const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${storeKey}` }, payload: {} })
      expect(res.statusCode, url).toBe(401)
    }
  })
})
