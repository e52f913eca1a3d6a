/** Why a call to an external service did not give a usable answer. */
export const UPSTREAM_FAILURES = ['timeout', 'network', 'server_error', 'malformed_response'] as const
export type UpstreamFailure = (typeof UPSTREAM_FAILURES)[number]

/**
 * An external service failed in a way worth retrying (timeout, connection
 * error, 5xx, a body that does not parse). Thrown, it makes the executor
 * retry the job with backoff through the queue; handlers never loop on it
 * themselves. Carries the status and service name, never the request body
 * or credentials.
 */
export class UpstreamError extends Error {
  readonly code: `upstream_${UpstreamFailure}`
  readonly service: string
  readonly status: number | null
  constructor(service: string, failure: UpstreamFailure, options: { status?: number; message?: string; cause?: unknown } = {}) {
    super(options.message ?? `${service}: ${failure.replace('_', ' ')}${options.status ? ` (HTTP ${options.status})` : ''}`, {
      cause: options.cause,
    })
    this.name = 'UpstreamError'
    this.code = `upstream_${failure}`
    this.service = service
    this.status = options.status ?? null
  }
}
