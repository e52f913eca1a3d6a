import { describe, expect, it } from 'vitest'
import { classifyAddress, type AddressClass } from './address-class.ts'
import { formatIpAddress, parseIpAddress, parseIpRange, rangeContains } from './ip-address.ts'

const TABLE: ReadonlyArray<readonly [string, AddressClass]> = [
  // IPv4
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['172.32.0.1', 'public'],
  ['172.15.255.255', 'public'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.1', 'public'],
  ['100.100.100.200', 'cloud_metadata'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.169.254', 'cloud_metadata'],
  ['169.254.170.2', 'cloud_metadata'],
  ['168.63.129.16', 'cloud_metadata'],
  ['169.254.1.1', 'link_local'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.10', 'documentation'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.99', 'documentation'],
  ['198.18.0.1', 'benchmark'],
  ['198.19.255.255', 'benchmark'],
  ['198.20.0.1', 'public'],
  ['192.88.99.1', 'reserved'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'reserved'],
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.215.14', 'public'],
  // IPv6
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.169.254', 'cloud_metadata'],
  ['::ffff:8.8.8.8', 'public'],
  ['::127.0.0.1', 'loopback'],
  ['::10.0.0.1', 'private'],
  ['64:ff9b::10.0.0.1', 'private'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', 'cloud_metadata'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['64:ff9b:1::1', 'reserved'],
  ['2002:0a00:0001::1', 'private'],
  ['2002:7f00:0001::', 'loopback'],
  ['2002:a9fe:a9fe::1', 'cloud_metadata'],
  ['2002:0808:0808::1', 'public'],
  ['fc00::1', 'unique_local'],
  ['fd12:3456:789a::1', 'unique_local'],
  ['fd00:ec2::254', 'cloud_metadata'],
  ['fe80::1', 'link_local'],
  ['fe80::1%eth0', 'link_local'],
  ['febf:ffff::1', 'link_local'],
  ['fec0::1', 'private'],
  ['ff02::1', 'multicast'],
  ['2001:db8::1', 'documentation'],
  ['3fff::1', 'documentation'],
  ['2001::1', 'reserved'],
  ['2001:2::1', 'benchmark'],
  ['100::1', 'reserved'],
  ['4000::1', 'reserved'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001:80b::200e', 'public'],
  // Not an address at all: never connectable by accident.
  ['localhost', 'reserved'],
  ['127.1', 'reserved'],
  ['', 'reserved'],
]

describe('classifyAddress', () => {
  it.each(TABLE)('%s is %s', (address, expected) => {
    expect(classifyAddress(address)).toBe(expected)
  })
})

describe('parseIpAddress', () => {
  it('expands every IPv6 form to 16 bytes, dotted tails included', () => {
    expect(formatIpAddress(parseIpAddress('::ffff:127.0.0.1')!)).toBe('0:0:0:0:0:ffff:7f00:1')
    expect(formatIpAddress(parseIpAddress('2001:db8::')!)).toBe('2001:db8:0:0:0:0:0:0')
    expect(formatIpAddress(parseIpAddress('1:2:3:4:5:6:7:8')!)).toBe('1:2:3:4:5:6:7:8')
    expect(formatIpAddress(parseIpAddress('::')!)).toBe('0:0:0:0:0:0:0:0')
    expect(formatIpAddress(parseIpAddress('10.0.0.1')!)).toBe('10.0.0.1')
    for (const bad of ['1.2.3', '1.2.3.256', 'fe80::1::2', '::ffff:1.2.3', 'example.com', '[10.0.0.1]']) expect(parseIpAddress(bad), bad).toBeNull()
  })

  it('matches ranges bit by bit, never across families', () => {
    const r = parseIpRange('fc00::/7')!
    expect(rangeContains(r, parseIpAddress('fdff::1')!)).toBe(true)
    expect(rangeContains(r, parseIpAddress('fe00::1')!)).toBe(false)
    expect(rangeContains(parseIpRange('0.0.0.0/0')!, parseIpAddress('::1')!)).toBe(false)
    expect(rangeContains(parseIpRange('10.1.2.3')!, parseIpAddress('10.1.2.3')!)).toBe(true)
    expect(rangeContains(parseIpRange('10.1.2.3')!, parseIpAddress('10.1.2.4')!)).toBe(false)
    expect(parseIpRange('10.0.0.0/33')).toBeNull()
    expect(parseIpRange('10.0.0.0/x')).toBeNull()
  })
})
