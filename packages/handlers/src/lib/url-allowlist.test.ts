import { describe, expect, it } from 'vitest'
import { parseIpAddress } from './ip-address.ts'
import { parseUrlAllowlist, UrlAllowlistError } from './url-allowlist.ts'

const target = (hostname: string, port: number, address: string) => ({ hostname, port, address: parseIpAddress(address)! })

describe('parseUrlAllowlist', () => {
  it('is empty when unset', () => {
    expect(parseUrlAllowlist(undefined).entries).toEqual([])
    expect(parseUrlAllowlist(' , ').allows(target('x', 80, '10.0.0.1'))).toBe(false)
  })

  it('lets ranges through on any port, host:port entries on their port only', () => {
    const list = parseUrlAllowlist('10.20.0.0/16, fd12::/16 inventory.internal:8443,127.0.0.1:4010 [::1]:4011 192.168.7.7')
    expect(list.entries).toHaveLength(6)
    expect(list.allows(target('any.name', 1234, '10.20.3.4'))).toBe(true)
    expect(list.allows(target('any.name', 1234, '10.21.3.4'))).toBe(false)
    expect(list.allows(target('x', 80, 'fd12:1::1'))).toBe(true)
    expect(list.allows(target('Inventory.Internal.', 8443, '10.9.9.9'))).toBe(true)
    expect(list.allows(target('inventory.internal', 443, '10.9.9.9'))).toBe(false)
    expect(list.allows(target('127.0.0.1', 4010, '127.0.0.1'))).toBe(true)
    expect(list.allows(target('127.0.0.1', 4012, '127.0.0.1'))).toBe(false)
    expect(list.allows(target('::1', 4011, '::1'))).toBe(true)
    expect(list.allows(target('x', 9, '192.168.7.7'))).toBe(true)
    expect(list.allows(target('x', 9, '192.168.7.8'))).toBe(false)
  })

  it('names the first entry it cannot read', () => {
    for (const bad of ['10.0.0.0/40', 'feeds.internal', 'feeds.internal:0', 'feeds.internal:70000', 'http://x:1', '[fe80::1', '*']) {
      expect(() => parseUrlAllowlist(`10.0.0.0/8,${bad}`), bad).toThrow(UrlAllowlistError)
      expect(() => parseUrlAllowlist(bad), bad).toThrow(expect.objectContaining({ code: 'invalid_url_allowlist', entry: bad }))
    }
  })
})
