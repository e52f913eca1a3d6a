import { promises as dns } from 'node:dns'

/** One address a host name resolved to. */
export interface ResolvedAddress {
  readonly address: string
  readonly family: 4 | 6
}

/**
 * Resolves a host name to every address it has. Rejects with an error whose
 * `code` is `ENOTFOUND` when the name has no address; any other rejection is
 * taken as a passing DNS failure (the job is retried).
 */
export type HostResolver = (hostname: string) => Promise<ReadonlyArray<ResolvedAddress>>

/** DNS error codes that mean "this name has no address", as opposed to "DNS did not answer". */
const NO_ADDRESS_CODES = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME'])

/**
 * The system's resolver (getaddrinfo: /etc/hosts, then DNS), as fetch would
 * use it.
 */
export const systemResolver: HostResolver = async (hostname) => {
  const found = await dns.lookup(hostname, { all: true, verbatim: true })
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
}

/**
 * A resolver that asks the given DNS servers (`'127.0.0.1:5353'`,
 * `'[::1]:53'`) for A and AAAA records directly, bypassing /etc/hosts.
 *
 * @example
 * const resolveHost = dnsServerResolver(['10.0.0.2'])
 */
export function dnsServerResolver(servers: ReadonlyArray<string>, options: { readonly timeoutMs?: number } = {}): HostResolver {
  const resolver = new dns.Resolver({ timeout: options.timeoutMs ?? 2_000, tries: 2 })
  resolver.setServers([...servers])
  return async (hostname) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)])
    const found: ResolvedAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 as const })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 as const })) : []),
    ]
    if (found.length > 0) return found
    const failures = [v4, v6].flatMap((r) => (r.status === 'rejected' ? [r.reason as NodeJS.ErrnoException] : []))
    // Both families empty or unknown: the name has no address. Anything else (timeout, SERVFAIL) may pass.
    const passing = failures.find((err) => !NO_ADDRESS_CODES.has(err.code ?? ''))
    if (passing) throw passing
    throw Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' })
  }
}

/** Whether a resolver's rejection means the name has no address (rather than DNS failing for now). */
export function isNoAddressError(err: unknown): boolean {
  return NO_ADDRESS_CODES.has((err as { code?: unknown } | null)?.code as string)
}
