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
import { ShutdownIncompleteError, ValidationError } from '../errors.ts'
import { createRegistry, declaredCosts, type Handler, type HandlerRegistry } from '../handler.ts'
import type { ClaimedJob } from '../types.ts'
import { createCompleter } from './completer.ts'
import { DEFAULT_ABORT_GRACE_MS, startRun, type ActiveRun, type RunOutcome } from './executor.ts'
import { retryOutcomeWrite } from './retry-outcome-write.ts'
import { createListener, type Listener } from './listener.ts'
import { createProducer } from './producer.ts'
import { createWatchdog } from './watchdog.ts'
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
    /** How long the leader's lease lasts unless renewed (see maintenance/leader.ts). */
    readonly leaderTtlMs?: number
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
  /**
   * How long an aborted handler (timeout, cancellation, lost lease, shutdown)
   * keeps its job before its run is given up on (default DEFAULT_ABORT_GRACE_MS;
   * see startRun in executor.ts).
   */
  readonly abortGraceMs?: number
  /**
   * Run a watchdog thread (default true) that keeps this pool's leases while
   * a handler blocks the event loop, and SIGKILLs the process when the loop
   * stays blocked past the held jobs' timeouts plus `abortGraceMs`; see
   * createWatchdog in watchdog.ts. False: no thread, and a blocked loop
   * loses its leases after `leaseMs`.
   */
  readonly watchdog?: boolean
}

/**
 * How long a stopping pool keeps retrying its last writes (releases,
 * outcomes) after the shutdown grace and the abort grace, when the database
 * does not take them: past this it gives up and stop() says which jobs it
 * left running, rather than outlasting the platform's kill timeout.
 */
export const STOP_WRITE_RETRY_MS = 5_000

/** A running pool of job slots. */
export interface WorkerPool {
  readonly workerId: string
  /**
   * Handlers running now, each holding a slot: never more than the
   * concurrency, counting handlers given up on after an abort that have not
   * settled yet.
   */
  readonly running: number
  readonly isLeader: boolean
  start(): Promise<void>
  /**
   * Stops claiming, waits up to the grace period for running jobs, then aborts
   * the rest and releases their leases (attempt given back, pending at once),
   * writes every queued outcome and closes its connections (not `db`).
   * Rejects with {@link ShutdownIncompleteError} (after closing everything)
   * when some job could not be handed back: the database did not take its
   * release or outcome within STOP_WRITE_RETRY_MS past both graces.
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
  const abortGraceMs = options.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS
  /** Runs whose handler has not settled: they hold slots (a run given up on after an abort too). */
  const busy = new Set<ActiveRun>()
  /** Runs whose outcome is not yet written: they hold leases. */
  const held = new Map<string, ActiveRun>()
  /** Past this `performance.now()` time failed outcome writes are not retried: set when stop() begins. */
  let writesUntil = Number.POSITIVE_INFINITY
  /** Jobs a stopping pool could not hand back (release or outcome not written). */
  const leftRunning = new Set<string>()

  /** A claimed job waiting for a slot (prefetch); `leaseFrom` is when its lease was last extended (`performance.now()`). */
  interface Waiting {
    row: ClaimedJobRow
    leaseFrom: number
  }
  /** Claimed jobs waiting for a slot (prefetch): they hold leases too. */
  let waiting: Waiting[] = []
  const fenceOf = (r: ClaimedJobRow) => ({ id: String(r.id), attempt: r.attempt, leaseToken: r.lease_token })
  const capacity = tuning.concurrency + tuning.prefetch
  // Refill when the local queue runs low, not on every freed slot, so claims come in batches.
  const refillBelow = Math.max(1, Math.ceil(tuning.prefetch / 2))

  const heartbeatMs = Math.max(200, Math.floor(tuning.leaseMs / 3))
  const startWaiting = () => {
    while (busy.size < tuning.concurrency && waiting.length > 0 && state === 'running') {
      // Heartbeats keep a prefetched job's lease at least two thirds full. Less
      // left means the process stood still (SIGSTOP, a blocked event loop) or
      // the database did not answer: the job may be another worker's by now,
      // so its lease is confirmed by a heartbeat before a handler starts.
      if (performance.now() > (waiting[0] as Waiting).leaseFrom + tuning.leaseMs - heartbeatMs) {
        beatSoon()
        return
      }
      const next = waiting.shift() as Waiting
      const run = startRun(
        {
          db,
          handlers,
          completer,
          log,
          workerId,
          leaseMs: tuning.leaseMs,
          now,
          onOutcome: options.onOutcome,
          abortGraceMs,
          writesUntil: () => writesUntil,
        },
        toClaimedJob(next.row),
        { leaseFrom: next.leaseFrom },
      )
      busy.add(run)
      held.set(run.job.id, run)
      // The slot is free only once the handler has really settled, not when its run was given up on.
      void run.settled.then(() => {
        busy.delete(run)
        startWaiting()
        producer.slotFreed()
      })
      void run.done.then(() => {
        held.delete(run.job.id)
        if (run.outcome === null && state !== 'running') leftRunning.add(run.job.id)
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
    onJobs(rows, sentAt) {
      for (const row of rows) waiting.push({ row, leaseFrom: sentAt })
      // Before any of them runs: a handler may block the loop from its first line.
      watchdog?.sync()
      startWaiting()
    },
  })

  const watchdog =
    options.watchdog === false
      ? null
      : createWatchdog({
          connectionString: options.connectionString,
          leaseMs: tuning.leaseMs,
          heartbeatMs,
          abortGraceMs,
          handlers,
          log,
          held: () => [
            ...[...held.values()].map((r) => ({ ...r.fence, type: r.job.type })),
            ...waiting.map((w) => ({ ...fenceOf(w.row), type: w.row.type })),
          ],
        })

  let heartbeat: NodeJS.Timeout | null = null
  /** The heartbeat in flight: one at a time, so a slow one is not piled on. */
  let beating: Promise<void> | null = null
  const beatSoon = () => {
    beating ??= beat().finally(() => {
      beating = null
    })
  }
  const beat = async () => {
    const runs = [...held.values()]
    const queued = waiting.map((w) => fenceOf(w.row))
    if (runs.length + queued.length === 0) return
    try {
      const sentAt = performance.now()
      const kept = await extendLeases(db, { fences: [...runs.map((r) => r.fence), ...queued], leaseMs: tuning.leaseMs })
      const keptById = new Map(kept.map((k) => [k.id, k]))
      // A prefetched job whose lease was lost belongs to someone else now.
      const asked = new Set(queued.map((q) => q.id))
      waiting = waiting.filter((w) => keptById.has(String(w.row.id)) || !asked.has(String(w.row.id)))
      for (const w of waiting) {
        const k = keptById.get(String(w.row.id))
        if (!k) continue
        w.leaseFrom = Math.max(w.leaseFrom, sentAt)
        // A prefetched job cancelled meanwhile starts as cancelled (its handler never runs).
        if (k.cancelRequested) w.row = { ...w.row, cancel_requested: true }
      }
      for (const run of runs) {
        const k = keptById.get(run.job.id)
        if (!k) {
          if (held.has(run.job.id)) run.abort('lease_lost')
          continue
        }
        run.leaseExtended(sentAt)
        if (k.cancelRequested) run.abort('cancelled')
      }
      // Prefetched jobs held back for a confirmation may start now (only after a
      // heartbeat that answered: a failing one must not spin through here).
      startWaiting()
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
      leaseMs: tuning.leaseMs,
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
          db,
          holder: workerId,
          log,
          intervalMs: options.maintenanceIntervals?.electionMs,
          ttlMs: options.maintenanceIntervals?.leaderTtlMs,
          onElected(lease) {
            tickers = services.map((s) => startTicker(s, log, lease))
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

  /** Prefetched jobs never started: back to the queue at once, attempt given back. */
  const releaseUnstarted = async () => {
    const unstarted = waiting
    waiting = []
    if (unstarted.length === 0) return
    const leaseEnds = Math.min(...unstarted.map((w) => w.leaseFrom)) + tuning.leaseMs
    try {
      await retryOutcomeWrite(() => giveBack(db, { fences: unstarted.map((w) => fenceOf(w.row)), runAt: null }), {
        until: () => Math.min(leaseEnds, writesUntil),
        log,
        what: 'release',
      })
    } catch (err) {
      log.error({ err, jobs: unstarted.length }, 'could not release prefetched jobs')
      for (const w of unstarted) leftRunning.add(String(w.row.id))
    }
  }

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
      // The thread loads while the connections open; no job is claimed before it is up.
      const watching = watchdog?.start()
      watching?.catch(() => {})
      await declareCosts(db, declaredCosts(handlers))
      await listener?.start()
      await leader?.start()
      await watching
      heartbeat = setInterval(beatSoon, heartbeatMs)
      producer.start()
      log.info({ concurrency: tuning.concurrency, types }, 'worker pool started')
    },
    stop() {
      stopping ??= (async () => {
        state = 'stopping'
        // One deadline for every write from here on: the pool stops in bounded time even if the database is gone.
        writesUntil = performance.now() + tuning.shutdownGraceMs + abortGraceMs + STOP_WRITE_RETRY_MS
        await producer.stop()
        await listener?.stop()
        await releaseUnstarted()
        let graceTimer: NodeJS.Timeout | undefined
        const deadline = new Promise<void>((r) => {
          graceTimer = setTimeout(r, tuning.shutdownGraceMs)
        })
        await Promise.race([Promise.all([...held.values()].map((r) => r.ended)), deadline])
        clearTimeout(graceTimer)
        // Still running for their jobs: handler not settled, outcome not written.
        const late = [...busy].filter((r) => held.has(r.job.id))
        if (late.length > 0) log.warn({ jobs: late.length }, 'grace period over; releasing running jobs')
        for (const run of late) run.abort('shutdown')
        await Promise.all([...held.values()].map((r) => r.done))
        await completer.drain()
        if (heartbeat) clearInterval(heartbeat)
        await watchdog?.stop()
        await leader?.stop()
        await claimSession.close()
        state = 'stopped'
        if (busy.size > 0) log.warn({ handlers: busy.size }, 'handlers still running after stop')
        if (leftRunning.size > 0) throw new ShutdownIncompleteError([...leftRunning].sort((a, b) => Number(a) - Number(b)))
        log.info('worker pool stopped')
      })()
      return stopping
    },
  }
}
