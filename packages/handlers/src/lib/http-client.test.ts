import { defineHandler } from '@backroom/queue-core'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAKE_SERVER_ALLOWLIST, startFakeServer, type FakeServer } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { callUpstreamJson } from './http-client.ts'
import { idempotencyKey } from './idempotency-key.ts'
import { parseUrlAllowlist } from './url-allowlist.ts'
import { createUrlGuard } from './url-guard.ts'

const bed = useHandlerTestBed()
let server: FakeServer
/** Answers per path: how the fake service behaves on each. */
const attemptsByPath = new Map<string, number>()

beforeAll(async () => {
  server = await startFakeServer(async (req, res) => {
    const n = (attemptsByPath.get(req.path) ?? 0) + 1
    attemptsByPath.set(req.path, n)
    if (req.path === '/ok') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":42}')
    if (req.path === '/flaky') {
      if (n < 3) return void res.writeHead(503).end('busy')
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":3}')
    }
    if (req.path === '/throttled') {
      if (n === 1) return void res.writeHead(429, { 'retry-after': '1' }).end()
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":1}')
    }
    if (req.path === '/rejected') return void res.writeHead(422, { 'content-type': 'application/json' }).end('{"error":"bad sku"}')
    if (req.path === '/malformed') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":')
    if (req.path === '/wrong-shape') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":"x"}')
    if (req.path === '/slow') {
      await new Promise((r) => setTimeout(r, 2_000))
      return void res.writeHead(200).end('{"value":0}')
    }
    res.writeHead(404).end()
  })
  await bed.startWorker([probe])
})
afterAll(() => server.close())

/** The fake service is on 127.0.0.1: allowed here by name, refused by the strict guard. */
const guards = {
  test: createUrlGuard({ allowlist: parseUrlAllowlist(FAKE_SERVER_ALLOWLIST) }),
  strict: createUrlGuard(),
}

/** A handler whose whole work is one call through the shared client. */
const probe = defineHandler({
  type: 'test.upstream',
  payload: Type.Object({
    path: Type.String(),
    strict: Type.Optional(Type.Boolean()),
    untrusted: Type.Optional(Type.Boolean()),
    maxBytes: Type.Optional(Type.Integer()),
  }),
  maxAttempts: 3,
  async run(payload, ctx) {
    const body = await callUpstreamJson(
      ctx,
      {
        service: 'probe',
        url: `${server.url}${payload.path}`,
        guard: payload.strict ? guards.strict : guards.test,
        untrustedUrl: payload.untrusted,
        maxBytes: payload.maxBytes,
        timeoutMs: 300,
        idempotencyKey: idempotencyKey(ctx.job, 'probe'),
      },
      Type.Object({ value: Type.Number() }),
    )
    return body
  },
})

describe('callUpstreamJson through a real worker', () => {
  it('returns the parsed body of a 2xx and sends an idempotency key stable across attempts', async () => {
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/ok' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.result).toEqual({ value: 42 })
    const seen = server.requests.find((r) => r.path === '/ok')!
    expect(seen.headers['idempotency-key']).toBe(`backroom:test.upstream:${job.id}:probe`)
  })

  it('retries 5xx through the queue with backoff until it succeeds', async () => {
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/flaky' } })
    const done = await bed.waitFinished(job.id, 60_000)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(3)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_server_error', 'upstream_server_error'])
  })

  it('snoozes on 429 for Retry-After without spending an attempt', async () => {
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/throttled' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(attemptsByPath.get('/throttled')).toBe(2)
    expect(done.errors).toEqual([])
    expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
  })

  it('fails at once, without retries, when the service refuses the request (4xx)', async () => {
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/rejected' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('upstream_rejected')
  })

  it('treats malformed bodies, wrong shapes and timeouts as retryable upstream errors', async () => {
    for (const [path, code] of [
      ['/malformed', 'upstream_malformed_response'],
      ['/wrong-shape', 'upstream_malformed_response'],
      ['/slow', 'upstream_timeout'],
    ] as const) {
      const job = await bed.enqueue({ type: 'test.upstream', payload: { path }, maxAttempts: 1 })
      const done = await bed.waitFinished(job.id)
      expect(done.state, path).toBe('failed')
      expect(done.lastError?.code, path).toBe(code)
    }
  })

  it('fails a body over maxBytes at once, without retries', async () => {
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/ok', maxBytes: 5 } })
    const done = await bed.waitFinished(job.id)
    expect([done.state, done.attempt, done.lastError?.code]).toEqual(['failed', 1, 'response_too_large'])
  })

  it('fails a URL the guard refuses at once, with fetch_refused, telling the operator why', async () => {
    const before = attemptsByPath.get('/ok') ?? 0
    const job = await bed.enqueue({ type: 'test.upstream', payload: { path: '/ok', strict: true } })
    const done = await bed.waitFinished(job.id)
    expect([done.state, done.attempt, done.lastError?.code]).toEqual(['failed', 1, 'fetch_refused'])
    expect(done.lastError?.message).toMatch(/loopback.*HANDLER_URL_ALLOWLIST/)
    expect(attemptsByPath.get('/ok') ?? 0).toBe(before)
  })

  it('reports the failures of an untrusted URL as fetch_failed, without status or body, keeping retry and fail-fast apart', async () => {
    const rejected = await bed.waitFinished((await bed.enqueue({ type: 'test.upstream', payload: { path: '/rejected', untrusted: true } })).id)
    expect([rejected.state, rejected.attempt, rejected.lastError?.code]).toEqual(['failed', 1, 'fetch_failed'])
    const slow = await bed.waitFinished((await bed.enqueue({ type: 'test.upstream', payload: { path: '/slow', untrusted: true }, maxAttempts: 1 })).id)
    expect(slow.lastError?.code).toBe('fetch_failed')
    const refused = await bed.waitFinished((await bed.enqueue({ type: 'test.upstream', payload: { path: '/ok', strict: true, untrusted: true } })).id)
    expect(refused.lastError).toMatchObject({ code: 'fetch_refused', message: 'probe: the URL was refused' })
    for (const done of [rejected, slow]) {
      expect(done.lastError?.message).toBe('probe: the request failed')
    }
  })
})
