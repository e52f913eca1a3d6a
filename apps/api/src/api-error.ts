/**
 * A caller's fault the routes name themselves (as opposed to schema
 * failures and queue-core's typed errors): the error handler sends
 * `{ error: { code, message, details } }` with this status.
 */
export class ApiError extends Error {
  readonly statusCode: number
  readonly code: string
  readonly details: unknown
  /** Sent as Retry-After (seconds, rounded up) when set. */
  readonly retryAfterMs: number | null
  constructor(statusCode: number, code: string, message: string, options: { details?: unknown; retryAfterMs?: number } = {}) {
    super(message)
    this.name = 'ApiError'
    this.statusCode = statusCode
    this.code = code
    this.details = options.details
    this.retryAfterMs = options.retryAfterMs ?? null
  }
}
