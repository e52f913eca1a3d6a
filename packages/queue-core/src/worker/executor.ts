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

/** Why a run's AbortSignal fired. */
export const ABORT_REASONS = ['timeout', 'cancelled', 'lease_lost', 'shutdown'] as const
export type AbortReason = (typeof ABORT_REASONS)[number]

/** A run in progress, as the pool tracks it. */
export interface ActiveRun {
  readonly job: ClaimedJob
  readonly fence: Fence
  abort(reason: AbortReason): void
  /** Settles when the handler has returned or thrown: its slot is free again. */
  readonly ended: Promise<void>
  /** Settles when the run's outcome is recorded (or given up). */
  readonly done: Promise<void>
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

/**
 * Starts ONE job: checks its payload, runs its handler under a timeout and
 * an AbortSignal, and records the outcome. Outcomes are classified here and
 * only here:
 * return → completed; PermanentError or ValidationError → failed;
 * SnoozeSignal → back to the queue later without spending the attempt;
 * anything else (including timeout) → retry with backoff until attempts run
 * out, then failed. Abort for shutdown → released at once, attempt given back;
 * for cancellation → cancelled; for a lost lease → nothing is written.
 */
export function startRun(deps: ExecutorDeps, job: ClaimedJob): ActiveRun {
  const fence: Fence = { id: job.id, attempt: job.attempt, leaseToken: job.leaseToken }
  // The run's child logger is made on first use: a pino child costs a few
  // µs, which mattered on a fast drain whose handlers never log.
  let runLog: Logger | undefined
  const log = (): Logger => (runLog ??= deps.log.child({ jobId: job.id, jobType: job.type, storeId: job.storeId, attempt: job.attempt }))
  const handler = deps.handlers.get(job.type)
  const timeoutMs = handler?.timeoutMs ?? DEFAULT_TIMEOUT_MS
  let aborted: ((err: RunAborted) => void) | undefined
  const abortedPromise = new Promise<never>((_, reject) => {
    aborted = reject
  })
  abortedPromise.catch(() => {})
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
    if (abortedBy) return
    abortedBy = new RunAborted(reason)
    controller?.abort(abortedBy)
    aborted?.(abortedBy)
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
      const ok = await claim.setProgress(deps.db, { fence, progress: JSON.stringify(value ?? null) })
      if (!ok) throw new LeaseLostError(job.id, job.attempt)
    },
    rateLimits: rateLimitsFor(deps.db),
    async heartbeat() {
      const held = await claim.extendLeases(deps.db, { fences: [fence], leaseMs: deps.leaseMs })
      if (held.length === 0) {
        abort('lease_lost')
        throw new LeaseLostError(job.id, job.attempt)
      }
    },
  }

  const run = async (): Promise<unknown> => {
    if (abortedBy) throw abortedBy as RunAborted
    if (!handler) throw new PermanentError('no_handler', { message: `no handler for job type ${job.type}` })
    const payload = handler.parse(job.payload)
    return await handler.run(payload, ctx)
  }

  const started = Date.now()
  let markEnded!: () => void
  const ended = new Promise<void>((resolve) => {
    markEnded = resolve
  })
  const done = (async () => {
    let ending: Ending
    try {
      ending = { ok: true, result: await Promise.race([run(), abortedPromise]) }
    } catch (thrown) {
      // Set from the abort closure; TypeScript cannot see that assignment here.
      const reason = (abortedBy as RunAborted | null)?.reason ?? null
      ending = { ok: false, thrown, reason }
    } finally {
      clearTimeout(timer)
      markEnded()
    }
    const outcome = await record(deps, fence, job, log, ending)
    if (deps.log.isLevelEnabled('info')) log().info({ durationMs: Date.now() - started, outcome }, 'job run ended')
    deps.onOutcome?.(job, outcome)
  })().catch((err: unknown) => {
    // Recording failed (database unreachable): the lease expires and the rescuer takes the job back.
    log().error({ err }, 'could not record job outcome')
  })

  return { job, fence, abort, ended, done }
}

type Ending = { ok: true; result: unknown } | { ok: false; thrown: unknown; reason: AbortReason | null }

async function record(deps: ExecutorDeps, fence: Fence, job: ClaimedJob, log: () => Logger, end: Ending): Promise<RunOutcome> {
  if (end.ok) {
    const ok = await deps.completer.push({ fence, state: 'completed', result: resultJson(end.result), error: null })
    return ok ? 'completed' : 'lease_lost'
  }
  const { thrown, reason } = end
  if (reason === 'lease_lost') {
    log().warn('lease lost; outcome dropped')
    return 'lease_lost'
  }
  if (reason === 'shutdown') {
    const released = await history.giveBack(deps.db, { fences: [fence], runAt: null })
    return released.length === 1 ? 'released' : 'lease_lost'
  }
  if (reason === 'cancelled') {
    const ok = await deps.completer.push({ fence, state: 'cancelled', result: null, error: toJobError(job, 'cancelled', 'cancel requested') })
    return ok ? 'cancelled' : 'lease_lost'
  }
  if (thrown instanceof SnoozeSignal) {
    const runAt = new Date(deps.now().getTime() + thrown.delayMs)
    const given = await history.giveBack(deps.db, { fences: [fence], runAt })
    log().warn({ delayMs: thrown.delayMs }, 'job snoozed')
    return given.length === 1 ? 'snoozed' : 'lease_lost'
  }
  const err = reason === 'timeout' ? Object.assign(new Error('handler timed out'), { code: 'timeout' }) : coerceError(thrown)
  const error = toJobError(job, err.code, err.message)
  const permanent = thrown instanceof PermanentError || thrown instanceof ValidationError
  const maxAttempts = job.maxAttempts ?? deps.handlers.get(job.type)?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS
  if (permanent || job.attempt >= maxAttempts) {
    log().warn({ errCode: error.code, permanent }, 'job failed')
    const ok = await deps.completer.push({ fence, state: 'failed', result: null, error })
    return ok ? 'failed' : 'lease_lost'
  }
  const runAt = nextRunAt(job.attempt, deps.now())
  log().warn({ errCode: error.code, retryAt: runAt.toISOString() }, 'job attempt failed; will retry')
  const ok = await history.retryLater(deps.db, { fence, runAt, error })
  return ok ? 'retried' : 'lease_lost'
}

function toJobError(job: ClaimedJob, code: string, message: string): JobError {
  return { attempt: job.attempt, at: new Date().toISOString(), code, message: message.slice(0, 2_000) }
}

/** Handler results are kept when small; large or unserialisable ones are dropped, not the job. */
const MAX_RESULT_BYTES = 64 * 1024
function resultJson(result: unknown): string | null {
  if (result === undefined) return null
  try {
    const text = JSON.stringify(result)
    return text !== undefined && text.length <= MAX_RESULT_BYTES ? text : null
  } catch {
    return null
  }
}
