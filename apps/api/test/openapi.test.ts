import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance, HTTPMethods } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
let app: FastifyInstance
const routes: Array<{ method: string; url: string }> = []
let doc: {
  openapi: string
  paths: Record<string, Record<string, { responses?: Record<string, unknown>; security?: unknown[] }>>
  components: { securitySchemes: Record<string, { type: string; scheme: string }> }
}

beforeAll(async () => {
  // With the cron secret set, so the drain endpoint is registered too.
  app = buildApp({ db: t.db, cronSecret: 'a-cron-secret-of-enough-length' })
  // Before ready(): every plugin (and so every route) is loaded after this hook is in place.
  app.addHook('onRoute', (route) => {
    for (const method of ([] as HTTPMethods[]).concat(route.method)) {
      // Fastify adds a HEAD route for each GET by itself; the document lists the GET.
      if (method !== 'HEAD') routes.push({ method, url: route.url })
    }
  })
  await app.ready()
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  expect(res.statusCode).toBe(200)
  doc = res.json()
})
afterAll(async () => {
  await app.close()
})

/** `/v1/jobs/:id` as OpenAPI writes it: `/v1/jobs/{id}`. */
const openapiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')

describe('GET /docs/json', () => {
  it('is an OpenAPI 3 document', () => {
    expect(doc.openapi).toMatch(/^3\./)
  })

  it('lists every route the app registers, with its responses', () => {
    expect(routes.length).toBeGreaterThan(10)
    const missing = routes.filter((r) => doc.paths[openapiPath(r.url)]?.[r.method.toLowerCase()] === undefined)
    expect(missing).toEqual([])
    for (const r of routes) {
      expect(Object.keys(doc.paths[openapiPath(r.url)]![r.method.toLowerCase()]!.responses ?? {}), `${r.method} ${r.url}`).not.toHaveLength(0)
    }
    // The contract's routes, by name.
    for (const [method, url] of [
      ['POST', '/v1/jobs'],
      ['POST', '/v1/jobs/batch'],
      ['GET', '/v1/jobs/{id}'],
      ['GET', '/v1/jobs'],
      ['POST', '/v1/jobs/{id}/cancel'],
      ['POST', '/v1/jobs/{id}/retry'],
      ['GET', '/v1/stats'],
      ['POST', '/v1/keys'],
      ['DELETE', '/v1/keys/{id}'],
      ['POST', '/v1/internal/process-pending'],
      ['GET', '/healthz'],
      ['GET', '/readyz'],
      ['GET', '/metrics'],
      ['GET', '/docs'],
    ] as const) {
      expect(doc.paths[url]?.[method.toLowerCase()], `${method} ${url}`).toBeDefined()
    }
  })

  it('declares bearer auth, and marks public routes as needing none', () => {
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.components.securitySchemes.cronSecret).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.paths['/healthz']!.get!.security).toEqual([])
    expect(doc.paths['/metrics']!.get!.security).toEqual([])
    expect(doc.paths['/v1/internal/process-pending']!.post!.security).toEqual([{ cronSecret: [] }])
  })
})

describe('GET /docs', () => {
  it('serves a page pointing at the document', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
    expect(res.body).toContain('/docs/json')
  })
})
