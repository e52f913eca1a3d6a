import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeDnsServer, type FakeDnsServer } from '../testing/fake-dns-server.ts'
import { startFakeServer, type FakeServer } from '../testing/fake-server.ts'
import { FetchRefusedError } from './fetch-refused-error.ts'
import { guardedFetch, type GuardedRequest } from './guarded-fetch.ts'
import { dnsServerResolver } from './host-resolver.ts'
import { parseUrlAllowlist } from './url-allowlist.ts'
import { createUrlGuard, type UrlGuard } from './url-guard.ts'

/*
 * Every server here listens on the loopback interface, which the guard
 * refuses: the allow-list opens exactly the ones playing "public" hosts
 * (by host:port), and the others play our internal network. No URL here
 * names an address off this machine, so a broken guard would only ever
 * reach these servers (the metadata and private ranges are covered by
 * url-guard.test.ts, which never connects).
 */
let dns: FakeDnsServer
let feeds: FakeServer
let cdn: FakeServer
let internal: FakeServer
let rebindSafe: FakeServer
let rebindInternal: FakeServer
let guard: UrlGuard
/** How many A questions for rebind.test the DNS server answered. */
let rebindAnswers = 0

const port = (server: FakeServer) => new URL(server.url).port

beforeAll(async () => {
  dns = await startFakeDnsServer((name, type) => {
    if (type === 'AAAA') return ['feeds.test', 'cdn.test', 'internal.test', 'rebind.test'].includes(name) ? [] : null
    if (name === 'feeds.test' || name === 'cdn.test' || name === 'internal.test') return ['127.0.0.1']
    // DNS rebinding: a harmless answer for the check, then our own machine.
    if (name === 'rebind.test') return (rebindAnswers += 1) === 1 ? ['127.0.0.2'] : ['127.0.0.1']
    return null
  })
  internal = await startFakeServer((_req, res) => void res.writeHead(200).end('internal secret'))
  cdn = await startFakeServer((_req, res) => void res.writeHead(200).end('from the cdn'))
  feeds = await startFakeServer((req, res) => {
    const to = (location: string, status = 302) => void res.writeHead(status, { location }).end()
    if (req.path === '/ok') return void res.writeHead(200).end('ok')
    if (req.path === '/to-internal') return to(`http://127.0.0.1:${port(internal)}/secret`)
    if (req.path === '/to-internal-name') return to(`http://internal.test:${port(internal)}/secret`)
    if (req.path === '/to-mapped') return to(`http://[::ffff:127.0.0.1]:${port(internal)}/secret`)
    if (req.path === '/to-ftp') return to('ftp://feeds.test/x')
    if (req.path === '/same-origin') return to('/ok', 301)
    if (req.path === '/cross-origin') return to(`http://cdn.test:${port(cdn)}/file`, 307)
    const loop = /^\/loop\/(\d+)$/.exec(req.path)
    if (loop) return to(`/loop/${Number(loop[1]) + 1}`)
    if (req.path === '/post-redirect') return to('/ok', 307)
    if (req.path === '/big') return void res.writeHead(200, { 'content-length': 3_000 }).end(Buffer.alloc(3_000, 'x'))
    if (req.path === '/big-chunked') {
      res.writeHead(200, { 'transfer-encoding': 'chunked' })
      for (let i = 0; i < 3; i++) res.write(Buffer.alloc(1_000, 'x'))
      return void res.end()
    }
    res.writeHead(404).end()
  })
  rebindSafe = await startFakeServer((_req, res) => void res.writeHead(200).end('safe'), { host: '127.0.0.2' })
  // The same port on 127.0.0.1: where a second lookup's answer would lead.
  rebindInternal = await startFakeServer((_req, res) => void res.writeHead(200).end('internal secret'), { port: Number(port(rebindSafe)) })
  guard = createUrlGuard({
    allowlist: parseUrlAllowlist(`feeds.test:${port(feeds)}, cdn.test:${port(cdn)}, 127.0.0.2/32`),
    resolveHost: dnsServerResolver([dns.address]),
  })
})
afterAll(async () => {
  await Promise.all([dns, feeds, cdn, internal, rebindSafe, rebindInternal].map((s) => s?.close()))
})

const get = (url: string, options: Partial<GuardedRequest> = {}) =>
  guardedFetch(guard, new URL(url), { service: 'test', method: 'GET', headers: {}, signal: AbortSignal.timeout(5_000), ...options })
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => null,
    (err: unknown) => (err instanceof FetchRefusedError ? { reason: err.reason, addressClass: err.addressClass } : err),
  )
const feedsUrl = (path: string) => `http://feeds.test:${port(feeds)}${path}`

describe('guardedFetch', () => {
  it('fetches an allowed host', async () => {
    const res = await get(feedsUrl('/ok'))
    expect([res.status, await res.text()]).toEqual([200, 'ok'])
  })

  it('refuses a redirect to our own machine or network at the hop, before connecting', async () => {
    for (const path of ['/to-internal', '/to-internal-name']) {
      expect(await refusal(get(feedsUrl(path))), path).toEqual({ reason: 'address', addressClass: 'loopback' })
    }
    expect(await refusal(get(feedsUrl('/to-mapped')))).toEqual({ reason: 'address', addressClass: 'loopback' })
    expect(await refusal(get(feedsUrl('/to-ftp')))).toEqual({ reason: 'scheme', addressClass: null })
    expect(internal.requests).toEqual([])
    // The first hop was served: the refusal came at the second.
    expect(feeds.requests.filter((r) => r.path.startsWith('/to-'))).toHaveLength(4)
  })

  it('keeps credentials within their origin: same-origin hops keep them, another origin gets none', async () => {
    const headers = { authorization: 'Bearer feed-token', 'x-api-key': 'k', 'idempotency-key': 'i', accept: 'text/csv' }
    const same = await get(feedsUrl('/same-origin'), { headers })
    expect(await same.text()).toBe('ok')
    expect(feeds.requests.at(-1)).toMatchObject({ path: '/ok', headers: { authorization: 'Bearer feed-token', 'x-api-key': 'k' } })

    const cross = await get(feedsUrl('/cross-origin'), { headers })
    expect(await cross.text()).toBe('from the cdn')
    const seen = cdn.requests.at(-1)!.headers
    expect(seen.authorization).toBeUndefined()
    expect(seen['x-api-key']).toBeUndefined()
    expect(seen['idempotency-key']).toBeUndefined()
    expect(seen.accept).toBe('text/csv')
  })

  it('caps the redirects followed, and refuses any when told to', async () => {
    const before = feeds.requests.length
    expect(await refusal(get(feedsUrl('/loop/0')))).toEqual({ reason: 'too_many_redirects', addressClass: null })
    // The first request and five redirects.
    expect(feeds.requests.length - before).toBe(6)
    expect(await refusal(get(feedsUrl('/same-origin'), { redirect: 'error' }))).toEqual({ reason: 'redirect', addressClass: null })
  })

  it('returns the redirect of a request with a body as is, sending the body once', async () => {
    const res = await get(feedsUrl('/post-redirect'), { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })
    expect(res.status).toBe(307)
    expect(feeds.requests.filter((r) => r.path === '/post-redirect').at(-1)!.body).toBe('{"a":1}')
  })

  it('connects to the address it checked: a DNS answer that changes after the check (rebinding) is never used', async () => {
    const res = await get(`http://rebind.test:${port(rebindSafe)}/data`)
    expect([res.status, await res.text()]).toEqual([200, 'safe'])
    expect(rebindInternal.requests).toEqual([])
    // Asked once: had the connection looked the name up again, it would have been told 127.0.0.1.
    expect(rebindAnswers).toBe(1)
    // The next request checks again, gets the new answer, and is refused.
    expect(await refusal(get(`http://rebind.test:${port(rebindSafe)}/data`))).toEqual({ reason: 'address', addressClass: 'loopback' })
    expect(rebindInternal.requests).toEqual([])
  })

  it('cuts a body off past maxBytes, at once when Content-Length announces it', async () => {
    await expect(get(feedsUrl('/big'), { maxBytes: 1_000 })).rejects.toMatchObject({ code: 'response_too_large' })
    const res = await get(feedsUrl('/big-chunked'), { maxBytes: 1_500 })
    expect(res.status).toBe(200)
    await expect(res.text()).rejects.toMatchObject({ code: 'response_too_large' })
    expect(await (await get(feedsUrl('/big'), { maxBytes: 3_000 })).text()).toHaveLength(3_000)
  })
})
