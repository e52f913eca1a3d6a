import { parseIpAddress, parseIpRange, rangeContains, sameAddress, type IpAddress, type IpRange } from './ip-address.ts'

/** The operator's exceptions to the URL guard (see {@link parseUrlAllowlist}). Empty by default. */
export const URL_ALLOWLIST_ENV = 'HANDLER_URL_ALLOWLIST'

/** One connection the guard is about to allow or refuse. */
export interface ConnectTarget {
  /** The URL's host name, lowercase (an IP literal without brackets for IP URLs). */
  readonly hostname: string
  readonly port: number
  /** The address the connection would go to. */
  readonly address: IpAddress
}

/** A parsed allow-list. */
export interface UrlAllowlist {
  /** The entries as written, for messages. */
  readonly entries: ReadonlyArray<string>
  /** Whether an entry lets a connection to `target` through although its address class is refused. */
  allows(target: ConnectTarget): boolean
}

/** An allow-list entry that is neither a range nor a host:port. */
export class UrlAllowlistError extends Error {
  readonly code = 'invalid_url_allowlist' as const
  readonly entry: string
  constructor(entry: string) {
    super(`${URL_ALLOWLIST_ENV}: "${entry}" is neither an address range (10.1.0.0/16, fd00::/8, 10.1.2.3) nor host:port (feeds.internal:8443, 127.0.0.1:4010, [::1]:4010)`)
    this.name = 'UrlAllowlistError'
    this.entry = entry
  }
}

type Entry =
  | { readonly kind: 'range'; readonly range: IpRange }
  | { readonly kind: 'address_port'; readonly address: IpAddress; readonly port: number }
  | { readonly kind: 'host_port'; readonly hostname: string; readonly port: number }

/**
 * Parses HANDLER_URL_ALLOWLIST: entries separated by commas or white space,
 * each either
 * - an address range or a single address (`10.20.0.0/16`, `fd12::/16`,
 *   `10.20.0.7`): any port of those addresses, whatever host name led there;
 * - `host:port` (`feeds.internal:8443`, `127.0.0.1:4010`, `[::1]:4010`):
 *   that host name (whatever it resolves to) or that address, on that port only.
 * Throws UrlAllowlistError naming the first bad entry.
 *
 * @example
 * parseUrlAllowlist('10.20.0.0/16, inventory.internal:8443').allows({ hostname: 'x', port: 80, address: parseIpAddress('10.20.1.1')! }) // true
 */
export function parseUrlAllowlist(text: string | undefined): UrlAllowlist {
  const written = (text ?? '').split(/[\s,]+/).filter(Boolean)
  const entries = written.map(parseEntry)
  return {
    entries: written,
    allows(target) {
      return entries.some((e) => {
        if (e.kind === 'range') return rangeContains(e.range, target.address)
        if (e.port !== target.port) return false
        return e.kind === 'address_port' ? sameAddress(e.address, target.address) : e.hostname === normalHost(target.hostname)
      })
    },
  }
}

function parseEntry(entry: string): Entry {
  const range = parseIpRange(entry)
  if (range) return { kind: 'range', range }
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/\s]+):(\d{1,5})$/.exec(entry)
  const port = Number(m?.[2])
  if (!m || !Number.isInteger(port) || port < 1 || port > 65_535) throw new UrlAllowlistError(entry)
  const host = m[1]!
  const address = parseIpAddress(host)
  if (address) return { kind: 'address_port', address, port }
  if (host.startsWith('[') || !/^[a-zA-Z0-9.-]+$/.test(host)) throw new UrlAllowlistError(entry)
  return { kind: 'host_port', hostname: normalHost(host), port }
}

/** Lowercase, without the trailing dot of a fully qualified name. */
function normalHost(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, '')
}
