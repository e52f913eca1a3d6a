import type { Logger } from 'pino'
import type { Executor as Db } from '../db/database.ts'
import * as claim from '../db/claim.ts'
import * as history from '../db/history.ts'
import type { Completer } from './completer.ts'
import { coerceError, LeaseLostError, PermanentError, SnoozeSignal, ValidationError } from '../errors.ts'
import type { HandlerRegistry } from '../handler.ts'
import { nextRunAt } from '../retry.ts'
import { handlerRateLimits, type HandlerRateLimits } from '../rate-limits.ts'
import type { ClaimedJob, Fence, JobError } from '../types.ts'
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_MS } from '../config.ts'
import { retryOutcomeWrite, writeErrorFields } from './retry-outcome-write.ts'
import { storableJson, storableText } from './storable-json.ts'

/** Why a run's AbortSignal fired. */
export const ABORT_REASONS = ['timeout', 'cancelled', 'lease_lost', 'shutdown'] as const
export type AbortReason = (typeof ABORT_REASONS)[number]

/**
 * How long an aborted handler (timeout, cancellation, lost lease, shutdown)
 * may take to settle before its run is given up on; see {@link startRun}.
 */
export const DEFAULT_ABORT_GRACE_MS = 5_000

/** A run in progress, as the pool tracks it. */
export interface ActiveRun {
  readonly job: ClaimedJob
  readonly fence: Fence
  abort(reason: AbortReason): void
  /**
   * Tells the run its lease was extended by a statement sent at `sentAt`
   * (a `performance.now()` time): its outcome write may be retried until
   * `sentAt + leaseMs`.
   */
  leaseExtended(sentAt: number): void
  /**
   * Settles when the run is over for its job: the handler returned or threw,
   * or, aborted, it was given up on after the abort grace.
   */
  readonly ended: Promise<void>
  /**
   * Settles when the handler has really returned or thrown, which for a
   * handler that ignores its signal may be long after `ended`, or never.
   * Until then it holds its slot.
   */
  readonly settled: Promise<void>
  /** Settles when the run's outcome is recorded (or given up). */
  readonly done: Promise<void>
  /** The outcome recorded; null until then, and for good when it could not be written. */
  readonly outcome: RunOutcome | null
}

/** How a run ended; for counters and tests. */
export type RunOutcome = 'completed' | 'failed' | 'retried' | 'snoozed' | 'cancelled' | 'released' | 'lease_lost'

/** Everything the executor needs from the pool. */
export interface ExecutorDeps {
  readonly db: Db
  readonly handlers: HandlerRegistry
  readonly completer: Completer
  readonly log: Logger
  readonly workerId: string
  readonly leaseMs: number
  readonly now: () => Date
  readonly onOutcome?: (job: ClaimedJob, outcome: RunOutcome) => void
  /** How long an aborted handler may take to settle before its outcome is recorded without it (default {@link DEFAULT_ABORT_GRACE_MS}). */
  readonly abortGraceMs?: number
  /** A `performance.now()` time past which failed outcome writes are not tried again even if the lease holds (a stopping pool's deadline). */
  readonly writesUntil?: () => number
}

/** One rate-limit helper per database handle, shared by its runs (it holds no per-job state). */
const rateLimitHelpers = new WeakMap<Db, HandlerRateLimits>()
function rateLimitsFor(db: Db): HandlerRateLimits {
  let helper = rateLimitHelpers.get(db)
  if (!helper) rateLimitHelpers.set(db, (helper = handlerRateLimits(db)))
  return helper
}

class RunAborted extends Error {
  constructor(readonly reason: AbortReason) {
    super(`run aborted: ${reason}`)
  }
}

/** How the handler itself ended. */
type Settlement = { ok: true; result: unknown } | { ok: false; thrown: unknown }

/**
 * Starts ONE job: checks its payload, runs its handler under a timeout and
 * an AbortSignal, and records the outcome. Outcomes are classified here and
 * only here:
 * return → completed; PermanentError or ValidationError → failed;
 * SnoozeSignal → back to the queue later without spending the attempt;
 * anything else (including timeout) → retry with backoff until attempts run
 * out, then failed. Abort for shutdown → released, attempt given back;
 * for cancellation → cancelled; for a lost lease (or a fenced write of the
 * handler's that matched nothing) → nothing is written.
 *
 * An abort does not end the run by itself. The handler's signal fires, and
 * the job stays this run's (state running, its lease heartbeated by the
 * pool) for up to `abortGraceMs` while the handler winds down, so its retry
 * cannot start beside it anywhere and a per-store or per-type limit still
 * counts it. A handler that settles within the grace ends the run then, with
 * the abort's outcome. One that does not is given up on: its outcome is
 * recorded (the retry, failure, cancellation or release) so the job does not
 * wait on it for ever, an error is logged with its jobId, and it keeps its
 * slot (`settled` stays pending) until it really settles, so a pool never
 * runs more handlers than its concurrency. Past that point its retry may run
 * elsewhere while it lingers: a handler that ignores its signal for longer
 * than the grace cannot be contained without killing the process.
 *
 * Outcome writes are fenced and retried with backoff after transient errors
 * while the lease may hold (see {@link retryOutcomeWrite}); text that
 * PostgreSQL cannot store (NUL, lone surrogates) is replaced first.
 * `options.leaseFrom` is when the job's lease was last extended
 * (`performance.now()`; default now), the start of that reckoning.
 */
export function startRun(deps: ExecutorDeps, job: ClaimedJob, options: { readonly leaseFrom?: number } = {}): ActiveRun {
  const fence: Fence = { id: job.id, attempt: job.attempt, leaseToken: job.leaseToken }
  // The run's child logger is made on first use: a pino child costs a few
  // µs, which mattered on a fast drain whose handlers never log.
  let runLog: Logger | undefined
  const log = (): Logger => (runLog ??= deps.log.child({ jobId: job.id, jobType: job.type, storeId: job.storeId, attempt: job.attempt }))
  const handler = deps.handlers.get(job.type)
  const timeoutMs = handler?.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const graceMs = deps.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS
  let leaseUntil = (options.leaseFrom ?? performance.now()) + deps.leaseMs
  let leaseLost = false
  const writableUntil = (): number =>
    leaseLost ? Number.NEGATIVE_INFINITY : Math.min(leaseUntil, deps.writesUntil?.() ?? Number.POSITIVE_INFINITY)
  const leaseExtended = (sentAt: number) => {
    leaseUntil = Math.max(leaseUntil, sentAt + deps.leaseMs)
  }

  let onAborted: ((aborted: RunAborted) => void) | undefined
  const abortedPromise = new Promise<RunAborted>((resolve) => {
    onAborted = resolve
  })
  // The AbortController is made on first use too (a handler reading
  // ctx.signal, or an abort): most runs never need one, and each cost about
  // 1.5 µs plus garbage on the drain benchmark.
  let controller: AbortController | undefined
  let abortedBy: RunAborted | null = null
  const signal = (): AbortSignal => {
    if (!controller) {
      controller = new AbortController()
      if (abortedBy) controller.abort(abortedBy)
    }
    return controller.signal
  }
  const abort = (reason: AbortReason) => {
    // A lost lease also stops outcome-write retries, even when the run was aborted for something else first.
    if (reason === 'lease_lost') leaseLost = true
    if (abortedBy) return
    abortedBy = new RunAborted(reason)
    controller?.abort(abortedBy)
    onAborted?.(abortedBy)
  }
  const timer = setTimeout(() => abort('timeout'), timeoutMs)
  timer.unref()
  // Cancelled while it waited in the local queue: never start the handler.
  if (job.cancelRequested) abort('cancelled')

  const ctx = {
    job,
    get log() {
      return log()
    },
    get signal() {
      return signal()
    },
    async progress(value: unknown) {
      const ok = await claim.setProgress(deps.db, { fence, progress: storableJson(value ?? null) ?? 'null' })
      if (!ok) {
        abort('lease_lost')
        throw new LeaseLostError(job.id, job.attempt)
      }
    },
    rateLimits: rateLimitsFor(deps.db),
    async heartbeat() {
      const sentAt = performance.now()
      const held = await claim.extendLeases(deps.db, { fences: [fence], leaseMs: deps.leaseMs })
      if (held.length === 0) {
        abort('lease_lost')
        throw new LeaseLostError(job.id, job.attempt)
      }
      leaseExtended(sentAt)
    },
  }

  const started = Date.now()
  // The handler's own ending, whenever it comes (a handler may also throw synchronously).
  const handled: Promise<Settlement> = (async () => {
    try {
      if (abortedBy) throw abortedBy as RunAborted
      if (!handler) throw new PermanentError('no_handler', { message: `no handler for job type ${job.type}` })
      const payload = handler.parse(job.payload)
      return { ok: true, result: await handler.run(payload, ctx) }
    } catch (thrown) {
      return { ok: false, thrown }
    }
  })()
  const settled = handled.then(() => {})

  /** How the run ends for its job: the handler's settlement, or the abort once the grace is over. */
  const decide = async (): Promise<Ending> => {
    const first = await Promise.race([handled, abortedPromise])
    if (!(first instanceof RunAborted)) {
      if (first.ok) return first
      // Set from the abort closure; TypeScript cannot see that assignment here.
      return { ok: false, thrown: first.thrown, reason: (abortedBy as RunAborted | null)?.reason ?? null }
    }
    const late = await settleWithin(handled, graceMs)
    if (late === null) {
      log().error({ reason: first.reason, graceMs }, 'handler still running after abort')
      void handled.then(() => log().warn({ durationMs: Date.now() - started }, 'abandoned handler settled'))
      return { ok: false, thrown: first, reason: first.reason }
    }
    return { ok: false, thrown: late.ok ? first : late.thrown, reason: first.reason }
  }

  let markEnded!: () => void
  const ended = new Promise<void>((resolve) => {
    markEnded = resolve
  })
  let outcome: RunOutcome | null = null
  const done = (async () => {
    let ending: Ending
    try {
      ending = await decide()
    } finally {
      clearTimeout(timer)
      markEnded()
    }
    outcome = await record({ deps, fence, job, log, writableUntil }, ending)
    if (deps.log.isLevelEnabled('info')) log().info({ durationMs: Date.now() - started, outcome }, 'job run ended')
    deps.onOutcome?.(job, outcome)
  })().catch((err: unknown) => {
    // Recording failed while the lease held (database unreachable): the lease expires and the rescuer takes the job back.
    log().error(writeErrorFields(err), 'could not record job outcome')
  })

  return {
    job,
    fence,
    abort,
    leaseExtended,
    ended,
    settled,
    done,
    get outcome() {
      return outcome
    },
  }
}

/** `p`'s value if it settles within `ms`, else null. */
async function settleWithin<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

type Ending = { ok: true; result: unknown } | { ok: false; thrown: unknown; reason: AbortReason | null }

/** What recording an outcome needs to know about its run. */
interface RecordArgs {
  readonly deps: ExecutorDeps
  readonly fence: Fence
  readonly job: ClaimedJob
  readonly log: () => Logger
  readonly writableUntil: () => number
}

async function record(args: RecordArgs, end: Ending): Promise<RunOutcome> {
  const { deps, fence, job, log, writableUntil } = args
  const retried = <T>(what: string, write: () => Promise<T>) => retryOutcomeWrite(write, { until: writableUntil, log: log(), what })
  if (end.ok) {
    const ok = await deps.completer.push({ fence, state: 'completed', result: resultJson(end.result), error: null }, { writableUntil })
    return ok ? 'completed' : 'lease_lost'
  }
  const { thrown, reason } = end
  // A fenced write of the handler's own (progress, heartbeat) found the job gone: so would ours.
  if (reason === 'lease_lost' || thrown instanceof LeaseLostError) {
    log().warn('lease lost; outcome dropped')
    return 'lease_lost'
  }
  if (reason === 'shutdown') {
    const released = await retried('release', () => history.giveBack(deps.db, { fences: [fence], runAt: null }))
    return released.length === 1 ? 'released' : 'lease_lost'
  }
  if (reason === 'cancelled') {
    const ok = await deps.completer.push({ fence, state: 'cancelled', result: null, error: toJobError(job, 'cancelled', 'cancel requested') }, { writableUntil })
    return ok ? 'cancelled' : 'lease_lost'
  }
  if (thrown instanceof SnoozeSignal) {
    const runAt = new Date(deps.now().getTime() + thrown.delayMs)
    const given = await retried('snooze', () => history.giveBack(deps.db, { fences: [fence], runAt }))
    log().warn({ delayMs: thrown.delayMs }, 'job snoozed')
    return given.length === 1 ? 'snoozed' : 'lease_lost'
  }
  const err = reason === 'timeout' ? Object.assign(new Error('handler timed out'), { code: 'timeout' }) : coerceError(thrown)
  const error = toJobError(job, err.code, err.message)
  const permanent = thrown instanceof PermanentError || thrown instanceof ValidationError
  const maxAttempts = job.maxAttempts ?? deps.handlers.get(job.type)?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS
  if (permanent || job.attempt >= maxAttempts) {
    log().warn({ errCode: error.code, permanent }, 'job failed')
    const ok = await deps.completer.push({ fence, state: 'failed', result: null, error }, { writableUntil })
    return ok ? 'failed' : 'lease_lost'
  }
  const runAt = nextRunAt(job.attempt, deps.now())
  log().warn({ errCode: error.code, retryAt: runAt.toISOString() }, 'job attempt failed; will retry')
  const ok = await retried('retry', () => history.retryLater(deps.db, { fence, runAt, error }))
  return ok ? 'retried' : 'lease_lost'
}

/** A job error whose text PostgreSQL can store (see storableText); the message is cut to 2,000 characters first. */
function toJobError(job: ClaimedJob, code: string, message: string): JobError {
  return { attempt: job.attempt, at: new Date().toISOString(), code: storableText(code), message: storableText(message.slice(0, 2_000)) }
}

/** Handler results are kept when small; large or unserialisable ones are dropped, not the job. */
const MAX_RESULT_BYTES = 64 * 1024
function resultJson(result: unknown): string | null {
  if (result === undefined) return null
  try {
    const text = storableJson(result)
    return text !== undefined && text.length <= MAX_RESULT_BYTES ? text : null
  } catch {
    return null
  }
}
