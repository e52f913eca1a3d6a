import { ipv4At, parseIpAddress, parseIpRange, rangeContains, type IpAddress, type IpRange } from './ip-address.ts'

/**
 * Kinds of address a handler never connects to unless the operator's
 * allow-list names it: our own machine and networks, the cloud's metadata
 * services, and ranges with no public host behind them.
 */
export const REFUSED_ADDRESS_CLASSES = [
  'unspecified',
  'loopback',
  'private',
  'link_local',
  'cgnat',
  'multicast',
  'benchmark',
  'documentation',
  'cloud_metadata',
  'unique_local',
  'reserved',
] as const
export type RefusedAddressClass = (typeof REFUSED_ADDRESS_CLASSES)[number]

/** `public`, or why the address is refused. */
export type AddressClass = 'public' | RefusedAddressClass

/**
 * Where an IPv6 range carries an IPv4 address, and at which byte: such an
 * address reaches whatever its IPv4 address reaches, so it is classified as
 * that address (`::ffff:127.0.0.1` is loopback, `2002:0a00:0001::` private).
 */
const EMBEDS_IPV4: ReadonlyArray<readonly [string, number]> = [
  ['::ffff:0:0/96', 12], // IPv4-mapped
  ['64:ff9b::/96', 12], // NAT64, well-known prefix
  ['::/96', 12], // IPv4-compatible (deprecated; :: and ::1 are matched before)
  ['2002::/16', 2], // 6to4
]

/**
 * Checked in order, before the embedding prefixes (so `::` and `::1` are not
 * read as IPv4-compatible): the first range holding the address names its
 * class. Specific ranges come first.
 */
const RANGES: ReadonlyArray<readonly [string, RefusedAddressClass]> = [
  // Metadata endpoints (AWS, GCP, Azure, OpenStack: 169.254.169.254; ECS; Azure's wire server; Alibaba; AWS over IPv6).
  ['169.254.169.254/32', 'cloud_metadata'],
  ['169.254.170.2/32', 'cloud_metadata'],
  ['168.63.129.16/32', 'cloud_metadata'],
  ['100.100.100.200/32', 'cloud_metadata'],
  ['fd00:ec2::254/128', 'cloud_metadata'],
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link_local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmark'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['64:ff9b:1::/48', 'reserved'],
  ['100::/64', 'reserved'],
  ['2001:2::/48', 'benchmark'],
  // Teredo, ORCHID and other IETF protocol assignments.
  ['2001::/23', 'reserved'],
  ['2001:db8::/32', 'documentation'],
  ['3fff::/20', 'documentation'],
  ['fc00::/7', 'unique_local'],
  ['fe80::/10', 'link_local'],
  // Site-local: deprecated, but still a private network where it is used.
  ['fec0::/10', 'private'],
  ['ff00::/8', 'multicast'],
]

/** Only 2000::/3 is global unicast; everything else in IPv6 is reserved (after the ranges above). */
const GLOBAL_UNICAST_V6 = range('2000::/3')

const embedded = EMBEDS_IPV4.map(([text, offset]) => [range(text), offset] as const)
const ranges = RANGES.map(([text, kind]) => [range(text), kind] as const)

/**
 * Classifies an address for the URL guard: `public`, or the kind of range
 * that makes it off limits. IPv6 forms that carry an IPv4 address (mapped,
 * compatible, NAT64, 6to4) are classified as that IPv4 address. Text that
 * is not an IP address is `reserved` (never connectable by accident).
 *
 * @example
 * classifyAddress('169.254.169.254') // 'cloud_metadata'
 * classifyAddress('::ffff:10.0.0.1') // 'private'
 * classifyAddress('8.8.8.8')         // 'public'
 */
export function classifyAddress(address: string | IpAddress): AddressClass {
  const ip = typeof address === 'string' ? parseIpAddress(address) : address
  if (!ip) return 'reserved'
  for (const [r, kind] of ranges) if (rangeContains(r, ip)) return kind
  if (ip.family === 6) {
    for (const [r, offset] of embedded) if (rangeContains(r, ip)) return classifyAddress(ipv4At(ip.bytes, offset))
    if (!rangeContains(GLOBAL_UNICAST_V6, ip)) return 'reserved'
  }
  return 'public'
}

function range(text: string): IpRange {
  const parsed = parseIpRange(text)
  if (!parsed) throw new Error(`bad built-in range ${text}`)
  return parsed
}
