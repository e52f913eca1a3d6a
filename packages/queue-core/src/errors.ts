/** Fail the job now, without further retries. Throw it from a handler. */
export class PermanentError extends Error {
  readonly code: string
  readonly details: unknown
  constructor(code: string, options: { message?: string; details?: unknown; cause?: unknown } = {}) {
    super(options.message ?? code, { cause: options.cause })
    this.name = 'PermanentError'
    this.code = code
    this.details = options.details
  }
}

/** Reschedule the job after `delayMs` without spending an attempt. Throw `snooze(ms)`. */
export class SnoozeSignal extends Error {
  readonly code = 'snoozed' as const
  readonly delayMs: number
  constructor(delayMs: number) {
    super('snoozed')
    this.name = 'SnoozeSignal'
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new RangeError('snooze delay must be a finite number >= 0')
    this.delayMs = delayMs
  }
}

/**
 * Build a {@link SnoozeSignal}: `throw snooze(30_000)` puts the job back for 30 s
 * and leaves its attempt count as it was.
 */
export function snooze(delayMs: number): SnoozeSignal {
  return new SnoozeSignal(delayMs)
}

/** No job with this id exists (or the caller may not see it). */
export class JobNotFoundError extends Error {
  readonly code = 'job_not_found' as const
  readonly jobId: string
  constructor(jobId: string) {
    super(`job not found`)
    this.name = 'JobNotFoundError'
    this.jobId = jobId
  }
}

/** A fenced write matched no row: the lease expired and the job moved on. */
export class LeaseLostError extends Error {
  readonly code = 'lease_lost' as const
  readonly jobId: string
  readonly attempt: number
  constructor(jobId: string, attempt: number) {
    super('lease lost')
    this.name = 'LeaseLostError'
    this.jobId = jobId
    this.attempt = attempt
  }
}

/**
 * A worker pool stopped without handing back every job it held: the
 * database did not take the releases or outcomes in time. The jobs stay
 * running until their leases expire and the rescuer takes them back.
 */
export class ShutdownIncompleteError extends Error {
  readonly code = 'shutdown_incomplete' as const
  /** The jobs left running, by id. */
  readonly jobIds: ReadonlyArray<string>
  constructor(jobIds: ReadonlyArray<string>, options: { cause?: unknown } = {}) {
    super('jobs could not be handed back; they run again after their leases expire', { cause: options.cause })
    this.name = 'ShutdownIncompleteError'
    this.jobIds = jobIds
  }
}

/** Input did not match its schema (a payload, an enqueue spec, options). */
export class ValidationError extends Error {
  readonly code = 'validation_failed' as const
  readonly details: unknown
  constructor(message: string, details?: unknown) {
    super(message)
    this.name = 'ValidationError'
    this.details = details
  }
}

/** The operation does not apply to the job's current state (e.g. retry a pending job). */
export class InvalidStateError extends Error {
  readonly code = 'invalid_state' as const
  readonly jobId: string
  readonly state: string
  constructor(jobId: string, state: string, action: string) {
    super(`cannot ${action} a job in state ${state}`)
    this.name = 'InvalidStateError'
    this.jobId = jobId
    this.state = state
  }
}

/**
 * An enqueue would take a store past its live-job cap (stores.max_live_jobs);
 * nothing of the batch was written. `retryAfterMs` estimates when room frees
 * up, from the store's completions over the last minute (the API sends it
 * as Retry-After with a 429).
 */
export class StoreCapacityError extends Error {
  readonly code = 'store_capacity' as const
  readonly storeId: string
  readonly cap: number
  readonly live: number
  readonly retryAfterMs: number
  /** Every store of the batch that was over its cap. */
  readonly details: ReadonlyArray<{ storeId: string; cap: number; live: number; incoming: number }>
  constructor(
    first: { storeId: string; cap: number; live: number },
    retryAfterMs: number,
    details: ReadonlyArray<{ storeId: string; cap: number; live: number; incoming: number }>,
  ) {
    super(`store ${first.storeId} holds ${first.live} live jobs; its cap is ${first.cap}`)
    this.name = 'StoreCapacityError'
    this.storeId = first.storeId
    this.cap = first.cap
    this.live = first.live
    this.retryAfterMs = retryAfterMs
    this.details = details
  }
}

/** Anything thrown, as an Error with a code: handlers may throw strings or objects. */
export function coerceError(thrown: unknown): Error & { code: string } {
  if (thrown instanceof Error) {
    const code = typeof (thrown as unknown as { code?: unknown }).code === 'string' ? (thrown as unknown as { code: string }).code : 'error'
    return Object.assign(thrown, { code })
  }
  const message = typeof thrown === 'string' ? thrown : safeStringify(thrown)
  return Object.assign(new Error(message), { code: 'non_error_thrown' })
}

/**
 * Text for any value, never throwing: JSON where it has one, else String().
 * A value neither can print (an object without a prototype and with a
 * cycle, a revoked Proxy) gets its tag, or a fixed text: the job must
 * still fail with an error rather than leave the executor unable to record it.
 */
function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    try {
      return String(value)
    } catch {
      try {
        return Object.prototype.toString.call(value)
      } catch {
        return 'unprintable thrown value'
      }
    }
  }
}
