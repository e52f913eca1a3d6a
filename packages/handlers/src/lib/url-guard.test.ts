import { createSocket, type Socket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeDnsServer, type FakeDnsServer } from '../testing/fake-dns-server.ts'
import { FetchRefusedError } from './fetch-refused-error.ts'
import { dnsServerResolver } from './host-resolver.ts'
import { parseUrlAllowlist } from './url-allowlist.ts'
import { createUrlGuard, urlGuardFor } from './url-guard.ts'

/** What the fake DNS answers: name → A and AAAA records. Unknown names are NXDOMAIN. */
const ZONE: Readonly<Record<string, { readonly A?: string[]; readonly AAAA?: string[] }>> = {
  'loop.test': { A: ['127.0.0.1'] },
  'ten.test': { A: ['10.1.2.3'] },
  'meta.test': { A: ['169.254.169.254'] },
  'six.test': { AAAA: ['::1'] },
  'mapped.test': { AAAA: ['::ffff:127.0.0.1'] },
  'nat64.test': { AAAA: ['64:ff9b::a00:1'] },
  'mixed.test': { A: ['93.184.215.14'], AAAA: ['fd00::1'] },
  'public.test': { A: ['93.184.215.14'], AAAA: ['2606:4700::6810:84e5'] },
}

let dns: FakeDnsServer
let silent: Socket
const guard = (allowlist = '') => createUrlGuard({ allowlist: parseUrlAllowlist(allowlist), resolveHost: dnsServerResolver([dns.address]) })
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => null,
    (err: unknown) => (err instanceof FetchRefusedError ? { reason: err.reason, addressClass: err.addressClass } : err),
  )

beforeAll(async () => {
  dns = await startFakeDnsServer((name, type) => ZONE[name]?.[type] ?? (name in ZONE ? [] : null))
  // A "DNS server" that never answers, for lookups that time out.
  silent = createSocket('udp4')
  await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve))
})
afterAll(async () => {
  await dns.close()
  silent.close()
})

// Only check() is called here: it resolves and classifies, and never connects anywhere.
describe('URL guard', () => {
  it('refuses host names that resolve to loopback, private, metadata, IPv6 loopback and IPv4-mapped addresses', async () => {
    const cases = [
      ['loop.test', 'loopback'],
      ['ten.test', 'private'],
      ['meta.test', 'cloud_metadata'],
      ['six.test', 'loopback'],
      ['mapped.test', 'loopback'],
      ['nat64.test', 'private'],
      // One bad address among good ones refuses the host.
      ['mixed.test', 'unique_local'],
    ] as const
    for (const [host, addressClass] of cases) {
      expect(await refusal(guard().check(new URL(`https://${host}/feed.csv`))), host).toEqual({ reason: 'address', addressClass })
    }
  })

  it('lets a public host through with every address it checked, asking DNS once per record type', async () => {
    const before = dns.queries.length
    const target = await guard().check(new URL('https://Public.Test/a?b=c'))
    expect(target).toMatchObject({ hostname: 'public.test', port: 443 })
    expect(target.addresses).toEqual([
      { address: '93.184.215.14', family: 4 },
      { address: '2606:4700::6810:84e5', family: 6 },
    ])
    expect(dns.queries.slice(before)).toEqual(
      expect.arrayContaining([
        { name: 'public.test', type: 'A' },
        { name: 'public.test', type: 'AAAA' },
      ]),
    )
    expect(dns.queries.length - before).toBe(2)
  })

  it('checks IP literals (every spelling the URL parser accepts) without asking DNS', async () => {
    const before = dns.queries.length
    for (const [url, addressClass] of [
      ['http://127.0.0.1:8080/', 'loopback'],
      ['http://0x7f.1/', 'loopback'],
      ['http://2130706433/', 'loopback'],
      ['http://[::1]/', 'loopback'],
      ['http://[::ffff:127.0.0.1]/', 'loopback'],
      ['http://[::ffff:a9fe:a9fe]/', 'cloud_metadata'],
      ['http://169.254.169.254/latest/meta-data/', 'cloud_metadata'],
      ['http://[fe80::1]/', 'link_local'],
      ['http://0.0.0.0:6379/', 'unspecified'],
    ] as const) {
      expect(await refusal(guard().check(new URL(url))), url).toEqual({ reason: 'address', addressClass })
    }
    expect((await guard().check(new URL('http://8.8.8.8/'))).addresses).toEqual([{ address: '8.8.8.8', family: 4 }])
    expect(dns.queries.length).toBe(before)
  })

  it('refuses other schemes, credentials in the URL and names that do not resolve', async () => {
    expect(await refusal(guard().check(new URL('ftp://public.test/a')))).toEqual({ reason: 'scheme', addressClass: null })
    expect(await refusal(guard().check(new URL('file:///etc/passwd')))).toEqual({ reason: 'scheme', addressClass: null })
    expect(await refusal(guard().check(new URL('https://user:pw@public.test/')))).toEqual({ reason: 'credentials', addressClass: null })
    expect(await refusal(guard().check(new URL('https://nowhere.test/')))).toEqual({ reason: 'unresolvable', addressClass: null })
  })

  it('lets the operator allow-list open a range, or one host name or address on one port', async () => {
    const g = guard('10.1.0.0/16, loop.test:8080, [::1]:9000')
    expect((await g.check(new URL('http://ten.test:5432/'))).addresses).toEqual([{ address: '10.1.2.3', family: 4 }])
    expect((await g.check(new URL('http://loop.test:8080/'))).addresses).toEqual([{ address: '127.0.0.1', family: 4 }])
    expect(await refusal(g.check(new URL('http://loop.test:8081/')))).toEqual({ reason: 'address', addressClass: 'loopback' })
    expect((await g.check(new URL('http://[::1]:9000/'))).port).toBe(9000)
    expect(await refusal(g.check(new URL('http://[::1]:9001/')))).toEqual({ reason: 'address', addressClass: 'loopback' })
    expect(await refusal(g.check(new URL('http://meta.test/')))).toEqual({ reason: 'address', addressClass: 'cloud_metadata' })
  })

  it('passes on a DNS failure that may clear up (a timeout) instead of refusing the URL', async () => {
    const { port } = silent.address() as AddressInfo
    const g = createUrlGuard({ resolveHost: dnsServerResolver([`127.0.0.1:${port}`], { timeoutMs: 100 }) })
    const err = await g.check(new URL('https://public.test/')).catch((e: unknown) => e)
    expect(err).not.toBeInstanceOf(FetchRefusedError)
    expect(err).toMatchObject({ code: expect.stringMatching(/^E/) })
  })

  it('stops waiting for DNS when the signal aborts', async () => {
    const { port } = silent.address() as AddressInfo
    const g = createUrlGuard({ resolveHost: dnsServerResolver([`127.0.0.1:${port}`], { timeoutMs: 5_000 }) })
    const err = await g.check(new URL('https://public.test/'), AbortSignal.timeout(50)).catch((e: unknown) => e)
    expect((err as Error).name).toBe('TimeoutError')
  })

  it('fails every check with not_configured when HANDLER_URL_ALLOWLIST does not parse', async () => {
    const g = urlGuardFor({ env: { HANDLER_URL_ALLOWLIST: '10.0.0.0/8, everything' } })
    await expect(g.check(new URL('https://public.test/'))).rejects.toMatchObject({
      code: 'not_configured',
      message: expect.stringContaining('"everything"'),
      details: { variable: 'HANDLER_URL_ALLOWLIST' },
    })
  })
})
