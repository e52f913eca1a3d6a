import type { AddressInfo } from 'node:net'
import { connect, type Db } from '@backroom/queue-core'
import { freePort, useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Starts an app on a real ephemeral port and returns its base URL. */
async function listen(db: Db, readyTimeoutMs?: number): Promise<string> {
  const app: FastifyInstance = buildApp({ db, readyTimeoutMs })
  cleanups.push(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
}

describe('the API on a real port', () => {
  it('answers /healthz and /readyz over HTTP', async () => {
    const base = await listen(t.db)
    const health = await fetch(`${base}/healthz`)
    expect(health.status).toBe(200)
    expect(health.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await health.json()).toEqual({ status: 'ok' })
    const ready = await fetch(`${base}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: 'ok' })
  })

  it('answers /readyz 503 once the pool is closed, while /healthz stays 200', async () => {
    const db = connect({ connectionString: t.url, max: 2 })
    cleanups.push(() => db.close())
    const base = await listen(db)
    expect((await fetch(`${base}/readyz`)).status).toBe(200)
    await db.close()
    const ready = await fetch(`${base}/readyz`)
    expect(ready.status).toBe(503)
    expect(await ready.json()).toEqual({ error: { code: 'database_unavailable', message: 'the database is not reachable' } })
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
  })

  it('answers /readyz 503 when the database server is unreachable', async () => {
    // A port nothing listens on: connections are refused at once.
    const url = new URL(t.url)
    url.port = String(await freePort())
    const db = connect({ connectionString: url.toString(), max: 1, acquireTimeoutMs: 1_000 })
    cleanups.push(() => db.close())
    const base = await listen(db, 1_500)
    const ready = await fetch(`${base}/readyz`)
    expect(ready.status).toBe(503)
    expect(((await ready.json()) as { error: { code: string } }).error.code).toBe('database_unavailable')
  })
})
