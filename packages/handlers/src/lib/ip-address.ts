import { isIPv4, isIPv6 } from 'node:net'

/** An IP address as its bytes (4 for IPv4, 16 for IPv6). */
export interface IpAddress {
  readonly family: 4 | 6
  readonly bytes: Uint8Array
}

/** A range of addresses: the first `prefix` bits of `base`. */
export interface IpRange {
  readonly base: IpAddress
  readonly prefix: number
}

/**
 * Parses a textual IP address: dotted IPv4 (`10.0.0.1`) or any IPv6 form,
 * with or without brackets (IPv6 only), a zone (`fe80::1%eth0`, dropped) or an
 * embedded dotted tail (`::ffff:127.0.0.1`). Anything else is null: host
 * names, shorthand IPv4 (`127.1`), ranges.
 *
 * @example
 * parseIpAddress('[::ffff:7f00:1]') // { family: 6, bytes: <00 … ff ff 7f 00 00 01> }
 */
export function parseIpAddress(text: string): IpAddress | null {
  const bracketed = text.startsWith('[') && text.endsWith(']')
  let s = bracketed ? text.slice(1, -1) : text
  if (!bracketed && isIPv4(s)) return { family: 4, bytes: Uint8Array.from(s.split('.').map(Number)) }
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  if (!isIPv6(s)) return null
  const lastColon = s.lastIndexOf(':')
  const tail = s.slice(lastColon + 1)
  if (tail.includes('.')) {
    // `::ffff:1.2.3.4`: the dotted tail is the last two groups.
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number)
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', rest] = s.split('::') as [string, string | undefined]
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':'))
  const front = groupsOf(head)
  const back = rest === undefined ? [] : groupsOf(rest)
  const groups = rest === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back]
  const bytes = new Uint8Array(16)
  groups.forEach((g, i) => {
    const value = Number.parseInt(g, 16)
    bytes[2 * i] = value >> 8
    bytes[2 * i + 1] = value & 0xff
  })
  return { family: 6, bytes }
}

/**
 * Parses `address/prefix` (`10.0.0.0/8`, `fc00::/7`), or a lone address as
 * a range of one. Bits past the prefix are ignored. Null when it is neither.
 */
export function parseIpRange(text: string): IpRange | null {
  const slash = text.indexOf('/')
  const base = parseIpAddress(slash < 0 ? text : text.slice(0, slash))
  if (!base) return null
  const max = base.bytes.length * 8
  if (slash < 0) return { base, prefix: max }
  const prefixText = text.slice(slash + 1)
  if (!/^\d{1,3}$/.test(prefixText)) return null
  const prefix = Number(prefixText)
  return prefix <= max ? { base, prefix } : null
}

/** Whether `address` lies in `range` (never across families). */
export function rangeContains(range: IpRange, address: IpAddress): boolean {
  if (range.base.family !== address.family) return false
  const whole = range.prefix >> 3
  for (let i = 0; i < whole; i++) if (range.base.bytes[i] !== address.bytes[i]) return false
  const bits = range.prefix & 7
  if (bits === 0) return true
  const mask = (0xff << (8 - bits)) & 0xff
  return ((range.base.bytes[whole]! ^ address.bytes[whole]!) & mask) === 0
}

/** Whether two addresses are the same (same family, same bytes). */
export function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.bytes.every((byte, i) => byte === b.bytes[i])
}

/** The IPv4 address held in `bytes[offset … offset + 3]`. */
export function ipv4At(bytes: Uint8Array, offset: number): IpAddress {
  return { family: 4, bytes: bytes.slice(offset, offset + 4) }
}

/** Dotted IPv4 or full (uncompressed) lowercase IPv6, for messages and tests. */
export function formatIpAddress(address: IpAddress): string {
  if (address.family === 4) return [...address.bytes].join('.')
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((address.bytes[i]! << 8) | address.bytes[i + 1]!).toString(16))
  return groups.join(':')
}
