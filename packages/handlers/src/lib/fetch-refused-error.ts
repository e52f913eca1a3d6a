import type { RefusedAddressClass } from './address-class.ts'

/** Why the URL guard refused a URL. */
export const FETCH_REFUSALS = ['malformed_url', 'scheme', 'credentials', 'address', 'unresolvable', 'redirect', 'too_many_redirects'] as const
export type FetchRefusal = (typeof FETCH_REFUSALS)[number]

const DESCRIPTIONS: Readonly<Record<FetchRefusal, string>> = {
  malformed_url: 'the URL does not parse',
  scheme: 'only http and https URLs are fetched',
  credentials: 'URLs may not carry a user name or password',
  address: 'the host resolves to an address handlers may not reach',
  unresolvable: 'the host name does not resolve',
  redirect: 'the server answered with a redirect that is not followed (not for this URL, or to no usable location)',
  too_many_redirects: 'too many redirects',
}

/**
 * The URL guard refused a URL before connecting (or a redirect, before
 * following it). Permanent: the same URL is refused again. `addressClass`
 * says which range an `address` refusal fell in; it is for the operator's
 * eyes (logs, messages about operator-configured URLs), never for a store.
 */
export class FetchRefusedError extends Error {
  readonly code = 'fetch_refused' as const
  readonly reason: FetchRefusal
  readonly addressClass: RefusedAddressClass | null
  constructor(reason: FetchRefusal, options: { readonly addressClass?: RefusedAddressClass; readonly cause?: unknown } = {}) {
    super(`${DESCRIPTIONS[reason]}${options.addressClass ? ` (${options.addressClass.replace('_', ' ')})` : ''}`, { cause: options.cause })
    this.name = 'FetchRefusedError'
    this.reason = reason
    this.addressClass = options.addressClass ?? null
  }
}
