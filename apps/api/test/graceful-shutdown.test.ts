import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createApiKey, defineHandler, enqueue, getJob } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'

const t = useTestDatabase()
const CRON_SECRET = 'cron-secret-for-shutdown-tests-0123'
/** How long the in-flight job holds its request open: long enough to close the app in the middle of it. */
const SLOW_JOB_MS = 500
/** How long after the last response close() may take to resolve. */
const CLOSE_GRACE_MS = 3_000
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A promise with its resolver outside, for waiting on a signal instead of sleeping. */
function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

/** Starts `app` on an ephemeral port of 127.0.0.1 and returns its base URL. */
async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
}

/**
 * One GET on a connection of its own (no keep-alive pool to reuse): the
 * status, or the socket error's code when the connection is refused or reset.
 */
function freshGet(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false, timeout: 5_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    req.end()
  })
}

describe('the API over a real port', () => {
  it('enqueues, reads and lists jobs over HTTP, a page at a time', async () => {
    // The store key asks for high below: allowed by this ceiling (the default is normal).
    const app = buildApp({ db: t.db, storeMaxPriority: 'high' })
    cleanups.push(() => app.close())
    const base = await listen(app)
    const key = (await createApiKey(t.db.kysely, { storeId: 'store-net' })).key
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }

    const created = await fetch(`${base}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify({ type: 'system.canary', payload: { sleepMs: 0 }, priority: 'high' }) })
    expect(created.status).toBe(201)
    const { job } = (await created.json()) as { job: { id: string; storeId: string; state: string } }
    expect(job).toMatchObject({ storeId: 'store-net', state: 'pending' })

    const batch = await fetch(`${base}/v1/jobs/batch`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jobs: [{ type: 'system.canary', payload: {} }, { type: 'system.canary', payload: {}, delayMs: 60_000 }] }),
    })
    expect(batch.status).toBe(201)

    const read = await fetch(`${base}/v1/jobs/${job.id}`, { headers: { authorization: headers.authorization } })
    expect(read.status).toBe(200)
    expect(((await read.json()) as { job: unknown }).job).toEqual(job)

    // Two pages of two and one, newest first, by following nextCursor over the wire.
    const ids: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? 'limit=2' : `limit=2&cursor=${encodeURIComponent(cursor)}`
      const page = await fetch(`${base}/v1/jobs?${query}`, { headers: { authorization: headers.authorization } })
      expect(page.status).toBe(200)
      const body = (await page.json()) as { jobs: Array<{ id: string }>; nextCursor: string | null }
      ids.push(...body.jobs.map((j) => j.id))
      cursor = body.nextCursor
      pages++
    } while (cursor !== null)
    expect(pages).toBe(2)
    expect(ids).toHaveLength(3)
    expect(ids.at(-1)).toBe(job.id)

    const missing = await fetch(`${base}/v1/jobs/999999999`, { headers: { authorization: headers.authorization } })
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ error: { code: 'job_not_found' } })
  })
})

/** Starts an app whose drain endpoint runs one slow job, and enqueues that job; `started` fires when it runs. */
async function slowDrainApp() {
  const started = signal()
  const events: string[] = []
  const slow = defineHandler({
    type: 'shutdown.slow',
    payload: Type.Object({}),
    run: async () => {
      started.resolve()
      // The slow work the close must wait for (the only sleep here: it is the point of the test).
      await new Promise((r) => setTimeout(r, SLOW_JOB_MS))
      events.push('handler')
    },
  })
  const app = buildApp({ db: t.db, cronSecret: CRON_SECRET, loadHandlers: async () => [slow] })
  const base = await listen(app)
  // Straight through queue-core: the enqueue route knows only @backroom/handlers' types, and this one is the test's.
  const { job } = await enqueue(t.db.kysely, { type: 'shutdown.slow', storeId: 'store-slow', payload: {} })
  return { app, base, started, events, jobId: job.id }
}

const DRAIN_BODY = JSON.stringify({ maxJobs: 1, budgetMs: 20_000 })
const DRAIN_HEADERS = { authorization: `Bearer ${CRON_SECRET}`, 'content-type': 'application/json' }

/** The drain call on a connection of its own that the client closes after the response (Connection: close). */
function drainOnOwnConnection(base: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/v1/internal/process-pending`, { method: 'POST', agent: false, headers: DRAIN_HEADERS }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    req.end(DRAIN_BODY)
  })
}

/** What a client arriving during the close gets: no connection, or Fastify's 503 on a reused one. */
const REFUSED = ['ECONNREFUSED', 'ECONNRESET', 503]

describe('app.close() on a listening API', () => {
  it('lets the in-flight request finish with 200, refuses new connections, and resolves', async () => {
    const { app, base, started, events, jobId } = await slowDrainApp()
    let closed = false
    cleanups.push(async () => {
      if (!closed) await app.close()
    })
    const key = (await createApiKey(t.db.kysely, { storeId: 'store-slow' })).key
    expect(await freshGet(`${base}/healthz`)).toBe(200)

    const inFlight = drainOnOwnConnection(base)
    await started.promise
    const closing = app.close().then(() => {
      closed = true
      events.push('closed')
    })

    expect(REFUSED).toContain(await freshGet(`${base}/healthz`))
    const withKey = await fetch(`${base}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${key}` } }).then(
      (res) => res.status,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    )
    expect(REFUSED).toContain(withKey)

    const response = await inFlight
    expect(response.status).toBe(200)
    expect(response.body).toMatchObject({ processed: 1, failed: 0, remaining: 0 })
    await closing
    // The close waited for the handler (the client may read the response's end before or after the close resolves).
    expect(events).toEqual(['handler', 'closed'])
    expect((await getJob(t.db.kysely, jobId)).state).toBe('completed')
  })

  /**
   * A request in flight over a keep-alive connection (fetch, any proxy or
   * load balancer) gets its 200 with `Connection: close`, so close() does
   * not wait for Fastify's keepAliveTimeout (72 s): it once did, past most
   * platforms' SIGTERM grace period.
   */
  it('resolves promptly when the in-flight request came over a keep-alive connection', async () => {
    const { app, base, started } = await slowDrainApp()
    let closing: Promise<void> | null = null
    cleanups.push(async () => {
      // Ends the lingering keep-alive connection the close is waiting for.
      app.server.closeAllConnections()
      await (closing ?? app.close())
    })
    const inFlight = fetch(`${base}/v1/internal/process-pending`, { method: 'POST', headers: DRAIN_HEADERS, body: DRAIN_BODY })
    await started.promise
    closing = app.close()
    const response = await inFlight
    expect(response.status).toBe(200)
    await response.json()
    const outcome = await Promise.race([closing.then(() => 'closed'), new Promise((r) => setTimeout(r, CLOSE_GRACE_MS, 'still open'))])
    expect(outcome).toBe('closed')
  })
})
