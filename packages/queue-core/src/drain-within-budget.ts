import { randomUUID } from 'node:crypto'
import type { Kysely } from 'kysely'
import { pino, type Logger } from 'pino'
import { DEFAULT_TIMEOUT_MS } from './config.ts'
import { claimBatchOnSession, extendLeases, useClaimSettings, type ClaimArgs } from './db/claim.ts'
import { limitedTypes } from './db/claim-limited.ts'
import type { Database } from './db/database.ts'
import { countPending, runTimePercentiles } from './db/drain.ts'
import { giveBack } from './db/history.ts'
import { toClaimedJob, type ClaimedJobRow } from './db/rows.ts'
import { declareCosts } from './db/settings.ts'
import { ValidationError } from './errors.ts'
import { createRegistry, declaredCosts, type Handler, type HandlerRegistry } from './handler.ts'
import type { ClaimedJob } from './types.ts'
import { createCompleter } from './worker/completer.ts'
import { startRun, type ActiveRun, type RunOutcome } from './worker/executor.ts'
import { topUpClaim } from './worker/top-up-claim.ts'

/** Jobs run at once by one drain when the caller does not say. */
export const DEFAULT_DRAIN_CONCURRENCY = 4
/**
 * Lease beyond the budget: the time a drain may need after its deadline to
 * write its last outcomes. A drain whose process dies holds its jobs no
 * longer than budget + margin; then the rescuer takes them back.
 */
export const DEFAULT_DRAIN_LEASE_MARGIN_MS = 15_000
/** Run-time estimate of a type with no recent history: cautious, so an unknown type does not overrun the budget. */
export const DEFAULT_RUN_ESTIMATE_MS = 5_000
/** How far back run times count for the estimate. */
export const DEFAULT_ESTIMATE_WINDOW_MS = 60 * 60_000
/** Which percentile of recent run times is the estimate: most runs fit, a slow tail does not set it. */
export const DEFAULT_ESTIMATE_PERCENTILE = 0.9
/** Most recent runs per type and final state the estimate reads. */
const ESTIMATE_SAMPLE = 200
/** Between lease checks of running jobs (a cancellation requested meanwhile aborts the run). */
const CHECK_INTERVAL_MS = 2_000
/** Outcomes a drain records as processed, and those of them that count as failed. */
const PROCESSED: ReadonlySet<RunOutcome> = new Set(['completed', 'failed', 'retried', 'snoozed', 'cancelled'])
const FAILED: ReadonlySet<RunOutcome> = new Set(['failed', 'retried'])

/** Options of {@link drainWithinBudget}. */
export interface DrainOptions {
  readonly handlers: ReadonlyArray<Handler> | HandlerRegistry
  /** Most jobs to claim in this drain (an integer ≥ 1). */
  readonly maxJobs: number
  /** Time the drain may take, in ms (an integer ≥ 1); it returns within it plus the time to write the last outcomes. */
  readonly budgetMs: number
  /** Job types to run; default every type in `handlers`. */
  readonly types?: ReadonlyArray<string>
  /** Jobs run at once (1 to 100); default 4. */
  readonly concurrency?: number
  readonly leaseMarginMs?: number
  /** Estimate for types with no recent history (ms). */
  readonly defaultEstimateMs?: number
  readonly estimateWindowMs?: number
  /** 0 < p ≤ 1. */
  readonly estimatePercentile?: number
  readonly log?: Logger
  readonly workerId?: string
  /** Called after each run's outcome is recorded, with the handler's run time in ms. */
  readonly onOutcome?: (job: ClaimedJob, outcome: RunOutcome, durationMs: number) => void
}

/** What one drain did. */
export interface DrainResult {
  /** Jobs run to an outcome (completed, failed, retried, snoozed or cancelled). */
  readonly processed: number
  /** Of those, runs that failed: failed for good, or retried later. */
  readonly failed: number
  /** Pending jobs of the drain's types left when it returned. */
  readonly remaining: number
  readonly durationMs: number
  /** Jobs claimed (processed + released + any whose lease was lost). */
  readonly claimed: number
  /** Claimed jobs given back unstarted (attempt returned) because the budget left no longer fit them. */
  readonly released: number
  /** The run-time estimate used per type, in ms. */
  readonly estimatesMs: Readonly<Record<string, number>>
}

/**
 * The core of the cron drain (POST /v1/internal/process-pending): runs
 * pending jobs for at most `budgetMs`, for platforms whose only worker is a
 * scheduled HTTP call.
 *
 * It claims only what it can finish in time. Each type's run time is
 * estimated from recent history (a percentile of finished_at - started_at,
 * `defaultEstimateMs` for types never seen, never above the handler's
 * timeout); each slot claims only types whose estimate fits the budget left,
 * at most floor(budget left / slowest such estimate) jobs at a time, and
 * never more than `maxJobs` in all. Claims go through the queue's own claim
 * statements (priority, fairness, pauses, concurrency and rate limits
 * included); runs go through the worker's executor, so outcomes are
 * classified and written exactly as a worker would, fenced.
 *
 * Deadlines: each run's timeout is the handler's, capped by the budget
 * left when it starts (past it, the run is a timeout like any other: retried
 * with backoff, then failed). A claimed job the budget no longer fits is
 * given back unstarted. Leases run to the deadline plus `leaseMarginMs`, so
 * if the process dies mid-drain (a serverless function frozen or killed),
 * the rescuer returns its jobs once that passes.
 *
 * Throws {@link ValidationError} for bad options; `db` must be a pool
 * (not a transaction): every claim and outcome commits on its own.
 *
 * @example
 * const r = await drainWithinBudget(db.kysely, { handlers, maxJobs: 50, budgetMs: 25_000, log })
 * log.info({ processed: r.processed, remaining: r.remaining }, 'drain done')
 */
export async function drainWithinBudget(db: Kysely<Database>, options: DrainOptions): Promise<DrainResult> {
  const startedAt = performance.now()
  const deadline = startedAt + options.budgetMs
  const left = () => deadline - performance.now()
  const concurrency = options.concurrency ?? DEFAULT_DRAIN_CONCURRENCY
  const leaseMarginMs = options.leaseMarginMs ?? DEFAULT_DRAIN_LEASE_MARGIN_MS
  const percentile = options.estimatePercentile ?? DEFAULT_ESTIMATE_PERCENTILE
  const windowMs = options.estimateWindowMs ?? DEFAULT_ESTIMATE_WINDOW_MS
  const defaultEstimateMs = options.defaultEstimateMs ?? DEFAULT_RUN_ESTIMATE_MS
  checkInteger('maxJobs', options.maxJobs, 1)
  checkInteger('budgetMs', options.budgetMs, 1)
  checkInteger('concurrency', concurrency, 1, 100)
  checkInteger('leaseMarginMs', leaseMarginMs, 0)
  checkInteger('defaultEstimateMs', defaultEstimateMs, 1)
  checkInteger('estimateWindowMs', windowMs, 1_000, 2_147_483_647)
  if (!(percentile > 0 && percentile <= 1)) throw new ValidationError('estimatePercentile must be above 0 and at most 1', { field: 'estimatePercentile' })

  const handlers: HandlerRegistry = Array.isArray(options.handlers)
    ? createRegistry(options.handlers as ReadonlyArray<Handler>)
    : (options.handlers as HandlerRegistry)
  const types = [...(options.types ?? handlers.keys())]
  const unknown = types.filter((t) => !handlers.has(t))
  if (unknown.length > 0) throw new ValidationError(`no handler for job types: ${unknown.join(', ')}`, { types: unknown })
  if (types.length === 0) throw new ValidationError('a drain needs at least one job type')

  const workerId = options.workerId ?? `drain-${randomUUID()}`
  const log = (options.log ?? pino({ level: 'silent' })).child({ component: 'drain', workerId })
  const timeoutOf = (type: string) => handlers.get(type)?.timeoutMs ?? DEFAULT_TIMEOUT_MS

  // As a worker pool does on start: a cron-only deployment has no other worker to declare them.
  await declareCosts(db, declaredCosts(handlers))
  const seen = await runTimePercentiles(db, { types, windowMs, percentile, sample: ESTIMATE_SAMPLE })
  const estimates = new Map(types.map((t) => [t, Math.min(defaultEstimateMs, timeoutOf(t))]))
  // A run never outlasts its timeout, so a slow history never makes a type look slower than that.
  for (const s of seen) estimates.set(s.type, Math.max(1, Math.min(Math.ceil(s.ms), timeoutOf(s.type))))

  const completer = createCompleter({ db, batch: 100, delayMs: 2, log })
  const counts = { claimed: 0, processed: 0, failed: 0, released: 0 }
  const held = new Map<string, ActiveRun>()
  const recorded: Array<Promise<void>> = []
  /** Jobs claimed, or asked for by a claim in flight: the maxJobs cap counts both. */
  let reserved = 0

  const claim = (args: ClaimArgs) => claimFor(db, args, log)

  const runOne = async (row: ClaimedJobRow): Promise<void> => {
    const job = toClaimedJob(row)
    const handler = handlers.get(job.type) as Handler
    // The executor reads the timeout from the registry: hand it a one-type registry with the capped one.
    const capped = new Map([[job.type, { ...handler, timeoutMs: Math.max(1, Math.min(timeoutOf(job.type), Math.floor(left()))) }]])
    const began = performance.now()
    let ranMs = 0
    const run = startRun(
      {
        db,
        handlers: capped,
        completer,
        log,
        workerId,
        leaseMs: options.budgetMs + leaseMarginMs,
        now: () => new Date(),
        onOutcome(j, outcome) {
          if (PROCESSED.has(outcome)) counts.processed++
          if (FAILED.has(outcome)) counts.failed++
          options.onOutcome?.(j, outcome, ranMs)
        },
      },
      job,
    )
    held.set(job.id, run)
    recorded.push(run.done.finally(() => held.delete(job.id)))
    // The slot is free once the handler has ended; its outcome is written meanwhile.
    await run.ended
    ranMs = performance.now() - began
  }

  const slot = async (): Promise<void> => {
    for (;;) {
      const budgetLeft = left()
      const fitting = types.filter((t) => (estimates.get(t) as number) <= budgetLeft)
      const free = options.maxJobs - reserved
      if (fitting.length === 0 || free <= 0) return
      const slowest = Math.max(...fitting.map((t) => estimates.get(t) as number))
      // Share what maxJobs leaves between the slots, so one slot does not take it all and run it alone.
      const want = Math.min(Math.floor(budgetLeft / slowest), Math.ceil(free / concurrency))
      reserved += want
      let rows: ClaimedJobRow[]
      try {
        rows = await claim({ workerId, limit: want, leaseMs: Math.ceil(budgetLeft + leaseMarginMs), types: fitting })
      } finally {
        reserved -= want
      }
      reserved += rows.length
      counts.claimed += rows.length
      if (rows.length === 0) {
        // Runs still holding their jobs (ours included: an outcome is written
        // just after its handler ends) may be what keeps a limited type at its
        // limit. Claim once more after they are recorded; then give up.
        if (held.size === 0) return
        await Promise.all([...held.values()].map((r) => r.done))
        continue
      }
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i] as ClaimedJobRow
        if ((estimates.get(row.type) as number) > left()) {
          // Earlier runs took longer than estimated: what is left goes back now, not at lease expiry.
          const back = rows.slice(i).map((r) => ({ id: String(r.id), attempt: r.attempt, leaseToken: r.lease_token }))
          counts.released += (await giveBack(db, { fences: back, runAt: null })).length
          return
        }
        await runOne(row)
      }
    }
  }

  // Lease checks: a job cancelled while it runs is aborted, as in a worker pool; a lost lease stops the run.
  const check = setInterval(() => {
    const runs = [...held.values()]
    if (runs.length === 0) return
    extendLeases(db, { fences: runs.map((r) => r.fence), leaseMs: Math.ceil(Math.max(0, left()) + leaseMarginMs) })
      .then((kept) => {
        const byId = new Map(kept.map((k) => [k.id, k]))
        for (const run of runs) {
          const k = byId.get(run.job.id)
          if (!k) {
            if (held.has(run.job.id)) run.abort('lease_lost')
          } else if (k.cancelRequested) run.abort('cancelled')
        }
      })
      .catch((err: unknown) => log.error({ err }, 'lease check failed'))
  }, CHECK_INTERVAL_MS)
  check.unref()

  try {
    await Promise.all(Array.from({ length: concurrency }, () => slot()))
  } finally {
    clearInterval(check)
    await Promise.all(recorded)
    await completer.drain()
  }
  const remaining = await countPending(db, types)
  const durationMs = Math.round(performance.now() - startedAt)
  if (counts.claimed > 0) log.info({ ...counts, remaining, durationMs }, 'drain done')
  else log.debug({ remaining, durationMs }, 'drain found nothing to run')
  return { ...counts, remaining, durationMs, estimatesMs: Object.fromEntries(estimates) }
}

/**
 * One claim, as the worker's producer makes it: the plain claim (its
 * settings local to a transaction, since a drain has no claim session);
 * when it reports limited types among ours and room is left, the limited
 * claim for the rest. A rate-limit retry hint is ignored: the drain does
 * not wait for tokens.
 */
async function claimFor(db: Kysely<Database>, args: ClaimArgs, log: Logger): Promise<ClaimedJobRow[]> {
  const plain = await db.transaction().execute(async (trx) => {
    await useClaimSettings(trx)
    return claimBatchOnSession(trx, args)
  })
  if (!plain.limitedTypes || plain.rows.length >= args.limit) return plain.rows
  const limited = await limitedTypes(db, args.types)
  return (await topUpClaim(db, { ...args, limited }, plain.rows, log)).rows
}

function checkInteger(field: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(`${field} must be an integer from ${min} to ${max}`, { field })
  }
}
