import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Executor } from '../db/database.ts'
import { acquireLease, releaseLease, renewLease, type LeaseFence } from '../db/leader.ts'
import { ValidationError } from '../errors.ts'

/**
 * Longest time between a follower's attempts to take the lease. A follower
 * also looks again just after the holder's lease would run out, if that
 * comes sooner, so a takeover does not wait for this.
 */
export const DEFAULT_ELECTION_INTERVAL_MS = 15_000
/**
 * How long the leader's lease lasts unless renewed: the longest a frozen
 * or cut-off leader can hold up maintenance. The leader renews it about
 * every 20 s from its rescue passes (rescuer.ts), so on an idle leader the
 * lease adds no transaction of its own.
 */
export const DEFAULT_LEADER_TTL_MS = 30_000

/**
 * The lease's timings, all derived from its TTL. With the default 30 s the
 * rescuer's passes (every 18-22 s, rescuer.ts) renew the lease before the
 * leader's own renewal falls due at 24 s, and every other pass finds at
 * least 6.5 s left, so renewals cost no transaction of their own.
 */
function leaseTimings(ttlMs: number) {
  return {
    /**
     * Lost by the local clock this long before the database would expire it.
     * The database grants `now() + ttl` when the renewal arrives, which is
     * after `sentAt` here, so `sentAt + ttl` is already on the safe side; the
     * margin covers clock-rate drift, not clock steps (a step forward of the
     * database server's clock beyond it would end the lease early).
     */
    marginMs: ttlMs / 20,
    /** The leader renews a lease this old, unless a fenced pass renewed it meanwhile; leaves 0.15 TTL for retries. */
    renewAfterMs: ttlMs * 0.8,
    /** A pass starts only with this much of the lease left (renewing first when less is). */
    passFloorMs: ttlMs / 6,
    /** Wait before renewing again after a renewal failed (the database did not answer). */
    retryMs: Math.min(1_000, ttlMs / 10),
  }
}

/**
 * The leadership of one term, as maintenance passes see it (see
 * startTicker in service.ts). Its fence fields let a statement renew the
 * lease and act only while this term holds it.
 */
export interface LeaderLease extends LeaseFence {
  /** Still held by the local monotonic clock. */
  readonly held: boolean
  /**
   * Before a pass: true when the lease is surely held for at least a sixth
   * of its TTL, renewing it in the database first when less is left. False
   * when it is lost (the leader then deposes itself) or could not be
   * confirmed now. Never throws.
   */
  ensure(): Promise<boolean>
  /** A fenced statement sent at `sentAt` (`performance.now()`) renewed the lease. */
  renewed(sentAt: number): void
  /** A fenced statement found the lease gone. */
  lost(): void
}

/** Leader election for one process. */
export interface Leader {
  start(): Promise<void>
  readonly isLeader: boolean
  stop(): Promise<void>
}

/** Why a term ended. */
type EndReason = 'expired' | 'superseded' | 'released'

/** One term of leadership held by this process. */
interface Term {
  readonly term: number
  /** `performance.now()` past which the lease is treated as lost. */
  validUntil: number
  /** `performance.now()` when the last successful renewal was sent. */
  renewedAt: number
  live: boolean
}

/**
 * Elects one maintenance leader among all worker processes with a lease in
 * the `leader_lease` table: the holder renews it well inside its TTL; once
 * it has expired by the database clock, any follower takes it over with the
 * next term. Unlike a session advisory lock, the lease ends without the
 * holder's cooperation: a leader frozen by SIGSTOP, a debugger or a blocked
 * event loop keeps its connections alive, yet loses the leadership after one
 * TTL. It also works through transaction-mode poolers.
 *
 * No two leaders act at once:
 * - The leader treats its lease as lost by its own monotonic clock
 *   ({@link leaseTimings}) before the database would let anyone else take
 *   it, deposes itself then (`onDeposed` stops its services) and logs
 *   `leadership lost`.
 * - Every pass is fenced on the lease before it starts (startTicker): a
 *   leader resuming from a freeze finds its lease run out and runs nothing.
 * - A freeze in the middle of a pass cannot be prevented, so its consequence
 *   is made harmless. The rescuer's statements renew and check the lease by
 *   term inside the statement and lock its row until they commit: a late one
 *   changes nothing, and a takeover waits for one in flight. The other
 *   services' statements are safe to run beside a new leader's (the promoter
 *   and the ager lock their rows with SKIP LOCKED and recompute from the
 *   current state; retention creates and drops partitions with IF [NOT]
 *   EXISTS under a lock timeout; VACUUM waits for another VACUUM), so at
 *   worst one such statement, sent just before the freeze, runs late.
 * - Across processes, a new term begins only once the old lease expired by
 *   the database clock, which the old holder's own clock had counted as
 *   lost already; within one process, a new term's services start only
 *   after the previous term's have stopped.
 *
 * A stopping leader hands the lease over at once (stop() releases it). One
 * that dies without stopping (SIGKILL, a crash) is replaced, like a frozen
 * one, one TTL after its last renewal at most: the price of not trusting a
 * live TCP session as proof of a live leader.
 *
 * `holder` names this process in the lease (default a random id).
 */
export function createLeader(args: {
  db: Executor
  log: Logger
  onElected(lease: LeaderLease): void
  onDeposed(): Promise<void> | void
  holder?: string
  intervalMs?: number
  ttlMs?: number
}): Leader {
  const log = args.log.child({ component: 'leader' })
  const holder = args.holder ?? `leader-${randomUUID()}`
  const intervalMs = args.intervalMs ?? DEFAULT_ELECTION_INTERVAL_MS
  const ttlMs = args.ttlMs ?? DEFAULT_LEADER_TTL_MS
  if (!Number.isFinite(ttlMs) || ttlMs < 1_000) {
    throw new ValidationError('leaderTtlMs must be a number >= 1000', { option: 'leaderTtlMs', value: ttlMs })
  }
  if (!Number.isFinite(intervalMs) || intervalMs < 10) {
    throw new ValidationError('electionMs must be a number >= 10', { option: 'electionMs', value: intervalMs })
  }
  const { marginMs, renewAfterMs, passFloorMs, retryMs } = leaseTimings(ttlMs)
  const clock = () => performance.now()
  const jitter = () => 0.8 + Math.random() * 0.4

  let held: Term | null = null
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  let watchdog: NodeJS.Timeout | null = null
  let step: Promise<void> = Promise.resolve()
  /** Settles when the services of every ended term have stopped. */
  let deposed: Promise<void> = Promise.resolve()

  const fenceOf = (t: Term): LeaseFence => ({ holder, term: t.term, ttlMs })

  const end = (t: Term, reason: EndReason) => {
    if (!t.live) return
    t.live = false
    if (held === t) held = null
    if (watchdog) clearTimeout(watchdog)
    watchdog = null
    if (reason === 'released') log.info({ term: t.term }, 'leadership released')
    else log.warn({ term: t.term, reason }, 'leadership lost')
    deposed = deposed.then(args.onDeposed).catch((err: unknown) => log.error({ err }, 'stopping maintenance failed'))
    // Look for the lease again at once (after the services stopped): if nobody
    // took it, this process may hold it again in a new term.
    if (!stopped && timer) {
      clearTimeout(timer)
      schedule(0)
    }
  }

  /** Ends the term when the local clock says its lease ran out, renewed or not. */
  const armWatchdog = (t: Term) => {
    if (watchdog) clearTimeout(watchdog)
    watchdog = setTimeout(() => {
      watchdog = null
      if (!t.live) return
      if (clock() >= t.validUntil) end(t, 'expired')
      else armWatchdog(t)
    }, Math.max(0, t.validUntil - clock()))
    watchdog.unref()
  }

  const extend = (t: Term, sentAt: number) => {
    if (!t.live) return
    t.renewedAt = Math.max(t.renewedAt, sentAt)
    t.validUntil = Math.max(t.validUntil, sentAt + ttlMs - marginMs)
    armWatchdog(t)
  }

  const renew = async (t: Term): Promise<'held' | 'lost' | 'unknown'> => {
    const sentAt = clock()
    try {
      if (await renewLease(args.db, fenceOf(t))) {
        extend(t, sentAt)
        return t.live ? 'held' : 'lost'
      }
      end(t, 'superseded')
      return 'lost'
    } catch (err) {
      log.warn({ err: (err as Error).message, term: t.term }, 'leader lease renewal failed')
      return 'unknown'
    }
  }

  const leaseOf = (t: Term): LeaderLease => ({
    holder,
    term: t.term,
    ttlMs,
    get held() {
      return t.live && clock() < t.validUntil
    },
    async ensure() {
      if (!t.live) return false
      if (clock() >= t.validUntil) {
        end(t, 'expired')
        return false
      }
      if (t.validUntil - clock() >= passFloorMs) return true
      await renew(t)
      return t.live && t.validUntil - clock() >= passFloorMs
    },
    renewed: (sentAt) => extend(t, sentAt),
    lost: () => end(t, 'superseded'),
  })

  /** While leader: renews the lease when due; returns when to look again. */
  const keepAlive = async (t: Term): Promise<number> => {
    if (clock() >= t.validUntil) {
      end(t, 'expired')
      return 0
    }
    const due = t.renewedAt + renewAfterMs
    if (clock() < due) return due - clock()
    const outcome = await renew(t)
    if (outcome === 'held') return t.renewedAt + renewAfterMs - clock()
    if (outcome === 'lost') return 0
    return Math.min(retryMs, Math.max(0, t.validUntil - clock()))
  }

  /** While follower: tries to take the lease; returns when to look again. */
  const contend = async (): Promise<number> => {
    // A new term starts only once the previous term's services have stopped.
    await deposed
    if (stopped) return 0
    const sentAt = clock()
    try {
      const attempt = await acquireLease(args.db, { holder, ttlMs })
      if (!attempt.acquired) {
        // Just after the holder's lease would run out, if that comes before the next regular look.
        return Math.min(intervalMs * jitter(), attempt.expiresInMs + Math.random() * Math.min(250, intervalMs / 4))
      }
      const t: Term = { term: attempt.term, validUntil: sentAt + ttlMs - marginMs, renewedAt: sentAt, live: true }
      held = t
      armWatchdog(t)
      log.info({ term: t.term }, 'elected leader')
      args.onElected(leaseOf(t))
      return renewAfterMs
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'leader election pass failed')
      return intervalMs * jitter()
    }
  }

  const schedule = (ms: number) => {
    timer = setTimeout(loop, Math.max(0, ms))
    timer.unref()
  }

  const loop = () => {
    timer = null
    const t = held
    step = (t?.live ? keepAlive(t) : contend()).then((ms) => {
      if (!stopped && timer === null) schedule(ms)
    })
  }

  return {
    async start() {
      loop()
      await step
    },
    get isLeader() {
      return held !== null && held.live && clock() < held.validUntil
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      timer = null
      await step
      const t = held
      if (t?.live) {
        end(t, 'released')
        await deposed
        // Services stopped: hand the lease over now rather than at its expiry.
        await releaseLease(args.db, fenceOf(t)).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'leader lease release failed'))
      }
      await deposed
    },
  }
}
