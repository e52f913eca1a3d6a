import { PermanentError } from '@backroom/queue-core'
import { classifyAddress } from './address-class.ts'
import type { HandlerDeps } from './deps.ts'
import { FetchRefusedError } from './fetch-refused-error.ts'
import { isNoAddressError, systemResolver, type HostResolver, type ResolvedAddress } from './host-resolver.ts'
import { parseIpAddress } from './ip-address.ts'
import { parseUrlAllowlist, URL_ALLOWLIST_ENV, type UrlAllowlist, type UrlAllowlistError } from './url-allowlist.ts'

/** A URL the guard let through, with the addresses a connection to it may use. */
export interface CheckedTarget {
  readonly url: URL
  /** Lowercase; an IP literal without its brackets. */
  readonly hostname: string
  readonly port: number
  /**
   * Every address the host resolved to, each one checked. The connection
   * must go to one of these, never to a fresh lookup's answer: DNS may
   * answer differently a moment later (rebinding).
   */
  readonly addresses: ReadonlyArray<ResolvedAddress>
}

/** Decides whether a URL may be fetched, and where the connection goes. */
export interface UrlGuard {
  /**
   * Checks `url` (http(s), no credentials), resolves its host once and
   * checks every address: refused ranges (loopback, private, link-local,
   * metadata… see classifyAddress) pass only when the allow-list names
   * them. Throws FetchRefusedError; a DNS failure other than "no such
   * name" is rethrown as is (worth retrying). `signal` bounds the lookup.
   */
  check(url: URL, signal?: AbortSignal): Promise<CheckedTarget>
}

/** What a guard is built from. */
export interface UrlGuardOptions {
  /** Exceptions to the refused ranges (default: none). */
  readonly allowlist?: UrlAllowlist
  /** How host names are resolved (default: the system's resolver). */
  readonly resolveHost?: HostResolver
}

/**
 * The one check every URL a handler fetches goes through (see
 * guardedFetch, which also pins the connection to the checked addresses
 * and checks every redirect).
 *
 * @example
 * const guard = createUrlGuard({ allowlist: parseUrlAllowlist('10.20.0.0/16') })
 * const target = await guard.check(new URL('https://feeds.example.com/a.csv'))
 */
export function createUrlGuard(options: UrlGuardOptions = {}): UrlGuard {
  const allowlist = options.allowlist ?? parseUrlAllowlist('')
  const resolveHost = options.resolveHost ?? systemResolver
  return {
    async check(url, signal) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchRefusedError('scheme')
      if (url.username || url.password) throw new FetchRefusedError('credentials')
      const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase()
      const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
      const literal = parseIpAddress(hostname)
      const addresses = literal ? [{ address: hostname, family: literal.family }] : await resolve(resolveHost, hostname, signal)
      for (const resolved of addresses) {
        const address = parseIpAddress(resolved.address)
        const kind = address ? classifyAddress(address) : 'reserved'
        if (kind === 'public') continue
        if (address && allowlist.allows({ hostname, port, address })) continue
        // One refused address refuses the host: which address a connection picks is not ours to steer.
        throw new FetchRefusedError('address', { addressClass: kind })
      }
      return { url, hostname, port, addresses }
    },
  }
}

const guards = new WeakMap<object, UrlGuard>()

/**
 * The guard of a set of handler dependencies: HANDLER_URL_ALLOWLIST from
 * `deps.env`, host names resolved by `deps.resolveHost` (the system's
 * resolver when unset). Built once per `deps`. An unreadable allow-list
 * does not stop the worker: every fetch fails with PermanentError
 * `not_configured` naming the variable, and jobs that fetch nothing run.
 */
export function urlGuardFor(deps: Pick<HandlerDeps, 'env' | 'resolveHost'>): UrlGuard {
  let guard = guards.get(deps)
  if (!guard) {
    guard = guardFromEnv(deps)
    guards.set(deps, guard)
  }
  return guard
}

function guardFromEnv(deps: Pick<HandlerDeps, 'env' | 'resolveHost'>): UrlGuard {
  let allowlist: UrlAllowlist
  try {
    allowlist = parseUrlAllowlist(deps.env[URL_ALLOWLIST_ENV])
  } catch (err) {
    const message = (err as UrlAllowlistError).message
    return {
      check: () => Promise.reject(new PermanentError('not_configured', { message, details: { variable: URL_ALLOWLIST_ENV } })),
    }
  }
  return createUrlGuard({ allowlist, resolveHost: deps.resolveHost })
}

async function resolve(resolveHost: HostResolver, hostname: string, signal: AbortSignal | undefined): Promise<ReadonlyArray<ResolvedAddress>> {
  let addresses: ReadonlyArray<ResolvedAddress>
  try {
    addresses = await untilAborted(resolveHost(hostname), signal)
  } catch (err) {
    if (isNoAddressError(err)) throw new FetchRefusedError('unresolvable', { cause: err })
    throw err
  }
  if (addresses.length === 0) throw new FetchRefusedError('unresolvable')
  return addresses
}

/** `work`, or the signal's reason as soon as it aborts (a DNS lookup cannot be cancelled, only abandoned). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}
