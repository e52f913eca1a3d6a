/** Why a call to an external service did not give a usable answer. */
export const UPSTREAM_FAILURES = ['timeout', 'network', 'server_error', 'malformed_response'] as const
export type UpstreamFailure = (typeof UPSTREAM_FAILURES)[number]

/**
 * An external service failed in a way worth retrying (timeout, connection
 * error, 5xx, a body that does not parse). Thrown, it makes the executor
 * retry the job with backoff through the queue; handlers never loop on it
 * themselves. Carries the status and service name, never the request body
 * or credentials.
 *
 * `opaque` is for URLs a store or a plugin named: the code is the generic
 * `fetch_failed` and the message says only that the request failed, with
 * no status, so that a job's error cannot tell a closed port from a
 * stalled or an answering one (`failure` keeps the kind for our own code).
 */
export class UpstreamError extends Error {
  readonly code: `upstream_${UpstreamFailure}` | 'fetch_failed'
  readonly service: string
  readonly failure: UpstreamFailure
  readonly status: number | null
  constructor(
    service: string,
    failure: UpstreamFailure,
    options: { status?: number; message?: string; cause?: unknown; opaque?: boolean } = {},
  ) {
    const detailed = options.message ?? `${service}: ${failure.replace('_', ' ')}${options.status ? ` (HTTP ${options.status})` : ''}`
    super(options.opaque ? `${service}: the request failed` : detailed, { cause: options.cause })
    this.name = 'UpstreamError'
    this.code = options.opaque ? 'fetch_failed' : `upstream_${failure}`
    this.service = service
    this.failure = failure
    this.status = options.opaque ? null : (options.status ?? null)
  }
}
