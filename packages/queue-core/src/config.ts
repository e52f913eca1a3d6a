import { ValidationError } from './errors.ts'

/** How long a claimed job's lease lasts before the rescuer may take it back. */
export const DEFAULT_LEASE_MS = 30_000
/** Attempts a job gets when neither the enqueue nor its handler says. */
export const DEFAULT_MAX_ATTEMPTS = 25
/** Jobs a worker pool runs at once. */
export const DEFAULT_CONCURRENCY = 10
/**
 * Safety-net poll while LISTEN is up (jittered ±20 %). Notifications carry
 * the pick-up; this only bounds the delay if one is lost, and keeps an idle
 * worker's cost at a couple of transactions a minute.
 */
export const DEFAULT_POLL_INTERVAL_MS = 30_000
/** Poll interval without LISTEN (transaction-mode poolers): the pick-up latency bound. */
export const DEFAULT_POLL_ONLY_INTERVAL_MS = 1_000
/** How long stop() waits for running jobs before aborting and releasing them. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000
/** A handler's time limit when it does not declare one. */
export const DEFAULT_TIMEOUT_MS = 5 * 60_000
/**
 * Jobs a pool may hold claimed beyond its running ones, so a freed slot starts
 * the next job without a round trip. Kept small: a prefetched job waits on this
 * worker even if another is idle, and holds a lease while it waits.
 */
export const DEFAULT_PREFETCH = 0
/** Completions buffered before a flush is forced. */
export const DEFAULT_COMPLETER_BATCH = 500
/** How long a completion may wait for others to share its flush. */
export const DEFAULT_COMPLETER_DELAY_MS = 2
/** Errors kept on a job (the most recent ones). */
export const MAX_KEPT_ERRORS = 10
/** The channel enqueue notifies and workers listen on. */
export const NOTIFY_CHANNEL = 'backroom_jobs'

/** Options of {@link createWorkerPool} that have defaults. */
export interface WorkerTuning {
  readonly concurrency: number
  readonly prefetch: number
  readonly leaseMs: number
  readonly pollIntervalMs: number
  readonly shutdownGraceMs: number
  readonly completerBatch: number
  readonly completerDelayMs: number
}

/** Throws a ValidationError naming the first bad option; call before opening connections. */
export function validateWorkerTuning(t: WorkerTuning): WorkerTuning {
  const checks: ReadonlyArray<[keyof WorkerTuning, number]> = [
    ['concurrency', 1],
    ['prefetch', 0],
    ['leaseMs', 1_000],
    ['pollIntervalMs', 10],
    ['shutdownGraceMs', 0],
    ['completerBatch', 1],
    ['completerDelayMs', 0],
  ]
  for (const [key, min] of checks) {
    const value = t[key]
    if (!Number.isFinite(value) || value < min) {
      throw new ValidationError(`${key} must be a number >= ${min}`, { option: key, value })
    }
  }
  return t
}

/** How often a worker re-reads which of its job types are under concurrency limits. */
export const LIMITS_REFRESH_MS = 5_000

/**
 * Priority aging (maintenance/ager.ts): a waiting job moves up one priority
 * level for every this many units of virtual time that newer work is served
 * ahead of it (one unit: one job of cost 1 from a store of weight 1).
 */
export const DEFAULT_AGING_STEP = 100

/** How often the leader ages waiting jobs. */
export const DEFAULT_AGING_INTERVAL_MS = 5_000

/**
 * How long opening a database connection (TCP, TLS, startup) may take on the
 * claim session and the LISTEN and leader connections. PostgreSQL answers a
 * startup in milliseconds, across regions with TLS in well under a second;
 * past this the server is unreachable and waiting longer only hides it.
 */
export const DB_CONNECT_TIMEOUT_MS = 5_000

/**
 * TCP keepalive idle time on our side of every connection. Node 20's libuv
 * then probes every second, ten times (checked with strace), so an idle
 * connection whose peer vanished errors after about 20 s instead of the
 * OS default's two hours. Probes only run while nothing is in flight: a
 * statement waiting for its answer is bounded by the query timeout instead.
 */
export const DB_KEEPALIVE_IDLE_MS = 10_000

/**
 * The same on the server's side, as session settings (seconds): PostgreSQL
 * ends the session of a client that vanished in about 10 + 3 × 5 = 25 s,
 * releasing its row and advisory locks (a dead leader's lock, a half-done
 * claim's rows) instead of holding them for the OS default of two hours.
 */
export const DB_SERVER_KEEPALIVES = { idleS: 10, intervalS: 5, count: 3 } as const

/**
 * The client-side query timeout is statement_timeout plus this. The server
 * cancels a slow statement first and answers with an error, keeping the
 * connection; the client's own timer fires only when no answer can come
 * (the network or the server is gone), and then the connection is discarded.
 * Two seconds cover a cancel's round trip and a busy event loop.
 */
export const DB_QUERY_TIMEOUT_MARGIN_MS = 2_000

/**
 * statement_timeout of the claim session and the LISTEN and leader
 * connections. Their statements take milliseconds (a claim about 1 ms, a
 * LISTEN or try-lock less); one still running after 5 s is stuck, and the
 * client-side timeout that follows (7 s) bounds how long a worker waits on
 * a dead connection before it opens a new one.
 */
export const DB_SESSION_STATEMENT_TIMEOUT_MS = 5_000

/**
 * How long closing a connection waits for the server's goodbye before the
 * socket is destroyed. A live server answers in milliseconds; a dead one
 * never would, and a stop (SIGTERM) must not wait on it.
 */
export const DB_CLOSE_TIMEOUT_MS = 1_000
