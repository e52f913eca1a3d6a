import { randomUUID } from 'node:crypto'
import { pino, type Logger } from 'pino'
import type { Executor } from '../db/database.ts'
import { extendLeases } from '../db/claim.ts'
import { connectClaimSession } from '../db/connect.ts'
import { toClaimedJob, type ClaimedJobRow } from '../db/rows.ts'
import { giveBack } from '../db/history.ts'
import { declareCosts } from '../db/settings.ts'
import {
  DEFAULT_COMPLETER_BATCH,
  DEFAULT_COMPLETER_DELAY_MS,
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_MS,
  DEFAULT_PREFETCH,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_POLL_ONLY_INTERVAL_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  validateWorkerTuning,
  type WorkerTuning,
} from '../config.ts'
import { ValidationError } from '../errors.ts'
import { createRegistry, declaredCosts, type Handler, type HandlerRegistry } from '../handler.ts'
import type { ClaimedJob } from '../types.ts'
import { createCompleter } from './completer.ts'
import { startRun, type ActiveRun, type RunOutcome } from './executor.ts'
import { createListener, type Listener } from './listener.ts'
import { createProducer } from './producer.ts'
import { createLeader, type Leader } from '../maintenance/leader.ts'
import { createPromoter } from '../maintenance/promoter.ts'
import { createAger } from '../maintenance/ager.ts'
import { createRescuer } from '../maintenance/rescuer.ts'
import { createRetention } from '../maintenance/retention.ts'
import { createVacuumer } from '../maintenance/vacuumer.ts'
import { startTicker, type MaintenanceService, type ServiceTicker } from '../maintenance/service.ts'

/** Options of {@link createWorkerPool}. */
export interface WorkerPoolOptions extends Partial<WorkerTuning> {
  /** Pool-backed executor for claims and outcomes. */
  readonly db: Executor
  /** Direct connection string for the LISTEN and leader connections (not through a transaction pooler). */
  readonly connectionString: string
  readonly handlers: ReadonlyArray<Handler> | HandlerRegistry
  /** Job types to run; default every type in `handlers`. */
  readonly types?: ReadonlyArray<string>
  /** LISTEN for enqueue notifications (default true); false polls only (transaction-mode poolers). */
  readonly listen?: boolean
  /** Take part in leader election and run maintenance when elected (default true). */
  readonly maintenance?: boolean
  /** Override maintenance intervals (tests). */
  readonly maintenanceIntervals?: {
    readonly rescueMs?: number
    readonly promoteMs?: number
    readonly electionMs?: number
    /** Between aging passes while jobs wait below urgent (see maintenance/ager.ts). */
    readonly agingMs?: number
  }
  /** Virtual time per priority level of aging (default DEFAULT_AGING_STEP; see maintenance/ager.ts for the bound). */
  readonly agingStep?: number
  readonly log?: Logger
  readonly workerId?: string
  readonly now?: () => Date
  /** Called after each run's outcome is recorded. */
  readonly onOutcome?: (job: ClaimedJob, outcome: RunOutcome) => void
}

/** A running pool of job slots. */
export interface WorkerPool {
  readonly workerId: string
  /** Jobs whose handler is running now. */
  readonly running: number
  readonly isLeader: boolean
  start(): Promise<void>
  /**
   * Stops claiming, waits up to the grace period for running jobs, then aborts
   * the rest and releases their leases (attempt given back, pending at once),
   * writes every queued outcome and closes its connections (not `db`).
   */
  stop(): Promise<void>
}

/**
 * Creates a worker pool: `concurrency` slots fed by one producer, LISTEN
 * wake-ups with a jittered poll as fallback, batched fenced completions,
 * heartbeats for every held lease, and (on the elected leader) the rescuer,
 * promoter, retention and vacuumer services.
 *
 * @example
 * const pool = createWorkerPool({ db: db.kysely, connectionString: url, handlers, concurrency: 20 })
 * await pool.start()
 * process.once('SIGTERM', () => pool.stop())
 */
export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  const tuning = validateWorkerTuning({
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    prefetch: options.prefetch ?? DEFAULT_PREFETCH,
    leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
    pollIntervalMs: options.pollIntervalMs ?? (options.listen === false ? DEFAULT_POLL_ONLY_INTERVAL_MS : DEFAULT_POLL_INTERVAL_MS),
    shutdownGraceMs: options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    completerBatch: options.completerBatch ?? DEFAULT_COMPLETER_BATCH,
    completerDelayMs: options.completerDelayMs ?? DEFAULT_COMPLETER_DELAY_MS,
  })
  const handlers: HandlerRegistry = Array.isArray(options.handlers)
    ? createRegistry(options.handlers as ReadonlyArray<Handler>)
    : (options.handlers as HandlerRegistry)
  const types = options.types ?? [...handlers.keys()]
  const unknown = types.filter((t) => !handlers.has(t))
  if (unknown.length > 0) throw new ValidationError(`no handler for job types: ${unknown.join(', ')}`, { types: unknown })
  if (types.length === 0) throw new ValidationError('a worker pool needs at least one job type')

  const workerId = options.workerId ?? `w-${randomUUID()}`
  const log = (options.log ?? pino({ level: 'silent' })).child({ workerId })
  const now = options.now ?? (() => new Date())
  const db = options.db
  const completer = createCompleter({ db, batch: tuning.completerBatch, delayMs: tuning.completerDelayMs, log })
  /** Runs whose handler is still going: they hold slots. */
  const busy = new Map<string, ActiveRun>()
  /** Runs whose outcome is not yet written: they hold leases. */
  const held = new Map<string, ActiveRun>()

  /** Claimed jobs waiting for a slot (prefetch): they hold leases too. */
  let waiting: ClaimedJobRow[] = []
  const capacity = tuning.concurrency + tuning.prefetch
  // Refill when the local queue runs low, not on every freed slot, so claims come in batches.
  const refillBelow = Math.max(1, Math.ceil(tuning.prefetch / 2))

  const startWaiting = () => {
    while (busy.size < tuning.concurrency && waiting.length > 0 && state === 'running') {
      const row = waiting.shift() as ClaimedJobRow
      const run = startRun(
        { db, handlers, completer, log, workerId, leaseMs: tuning.leaseMs, now, onOutcome: options.onOutcome },
        toClaimedJob(row),
      )
      busy.set(run.job.id, run)
      held.set(run.job.id, run)
      void run.ended.then(() => {
        busy.delete(run.job.id)
        startWaiting()
        producer.slotFreed()
      })
      void run.done.then(() => {
        held.delete(run.job.id)
        producer.slotFreed()
      })
    }
  }

  // Claims get their own two connections, whose sessions carry the claim settings.
  const claimSession = connectClaimSession(options.connectionString, 'backroom-claim')
  const producer = createProducer({
    session: claimSession.kysely,
    workerId,
    leaseMs: tuning.leaseMs,
    types,
    pollIntervalMs: tuning.pollIntervalMs,
    log,
    freeSlots: () => (waiting.length < refillBelow ? capacity - busy.size - waiting.length : 0),
    saturated: () => completer.pending >= tuning.completerBatch * 2,
    onJobs(rows) {
      waiting.push(...rows)
      startWaiting()
    },
  })

  let heartbeat: NodeJS.Timeout | null = null
  const beat = async () => {
    const runs = [...held.values()]
    const queued = waiting.map((r) => ({ id: r.id, attempt: r.attempt, leaseToken: r.lease_token }))
    if (runs.length + queued.length === 0) return
    try {
      const kept = await extendLeases(db, { fences: [...runs.map((r) => r.fence), ...queued], leaseMs: tuning.leaseMs })
      const keptById = new Map(kept.map((k) => [k.id, k]))
      // A prefetched job whose lease was lost belongs to someone else now.
      const lost = new Set(queued.filter((q) => !keptById.has(String(q.id))).map((q) => q.id))
      if (lost.size > 0) waiting = waiting.filter((r) => !lost.has(r.id))
      // A prefetched job cancelled meanwhile starts as cancelled (its handler never runs).
      const cancelled = new Set(kept.filter((k) => k.cancelRequested).map((k) => k.id))
      if (cancelled.size > 0) waiting = waiting.map((r) => (cancelled.has(String(r.id)) ? { ...r, cancel_requested: true } : r))
      for (const run of runs) {
        const k = keptById.get(run.job.id)
        if (!k) {
          if (held.has(run.job.id)) run.abort('lease_lost')
        } else if (k.cancelRequested) run.abort('cancelled')
      }
    } catch (err) {
      log.error({ err }, 'heartbeat failed')
    }
  }

  const listener: Listener | null =
    options.listen === false
      ? null
      : createListener({
          connectionString: options.connectionString,
          log,
          onWake(payload) {
            if (payload === 'scheduled') promoterTicker?.poke()
            else producer.wake()
          },
        })

  const promoter = createPromoter({
    db,
    // Without LISTEN nothing wakes the promoter early: keep its sleeps short.
    intervalMs: options.maintenanceIntervals?.promoteMs ?? (options.listen === false ? 1_000 : undefined),
  })
  let promoterTicker: ServiceTicker | null = null
  const services: MaintenanceService[] = [
    createRescuer({
      db,
      maxAttempts: new Map([...handlers.values()].filter((h) => h.maxAttempts !== undefined).map((h) => [h.type, h.maxAttempts as number])),
      intervalMs: options.maintenanceIntervals?.rescueMs,
    }),
    promoter,
    createAger({ db, step: options.agingStep, intervalMs: options.maintenanceIntervals?.agingMs }),
    createRetention({ db }),
    createVacuumer({ db }),
  ]
  let tickers: ServiceTicker[] = []
  const leader: Leader | null =
    options.maintenance === false
      ? null
      : createLeader({
          connectionString: options.connectionString,
          log,
          intervalMs: options.maintenanceIntervals?.electionMs,
          onElected() {
            tickers = services.map((s) => startTicker(s, log))
            promoterTicker = tickers[services.indexOf(promoter)] ?? null
          },
          async onDeposed() {
            const t = tickers
            tickers = []
            promoterTicker = null
            await Promise.all(t.map((x) => x.stop()))
          },
        })

  let state: 'new' | 'running' | 'stopping' | 'stopped' = 'new'
  let stopping: Promise<void> | null = null

  return {
    workerId,
    get running() {
      return busy.size
    },
    get isLeader() {
      return leader?.isLeader ?? false
    },
    async start() {
      if (state !== 'new') throw new Error('worker pool already started')
      state = 'running'
      await declareCosts(db, declaredCosts(handlers))
      await listener?.start()
      await leader?.start()
      heartbeat = setInterval(() => void beat(), Math.max(200, Math.floor(tuning.leaseMs / 3)))
      producer.start()
      log.info({ concurrency: tuning.concurrency, types }, 'worker pool started')
    },
    stop() {
      stopping ??= (async () => {
        state = 'stopping'
        await producer.stop()
        await listener?.stop()
        // Prefetched jobs never started: back to the queue at once, attempt given back.
        const unstarted = waiting
        waiting = []
        await giveBack(db, { fences: unstarted.map((r) => ({ id: r.id, attempt: r.attempt, leaseToken: r.lease_token })), runAt: null })
        let graceTimer: NodeJS.Timeout | undefined
        const deadline = new Promise<void>((r) => {
          graceTimer = setTimeout(r, tuning.shutdownGraceMs)
        })
        await Promise.race([Promise.all([...busy.values()].map((r) => r.ended)), deadline])
        clearTimeout(graceTimer)
        const late = [...busy.values()]
        if (late.length > 0) log.warn({ jobs: late.length }, 'grace period over; releasing running jobs')
        for (const run of late) run.abort('shutdown')
        await Promise.all([...held.values()].map((r) => r.done))
        await completer.drain()
        if (heartbeat) clearInterval(heartbeat)
        await leader?.stop()
        await claimSession.close()
        state = 'stopped'
        log.info('worker pool stopped')
      })()
      return stopping
    },
  }
}
