import type { Logger } from 'pino'
import { claimBatchOnSession } from '../db/claim.ts'
import { claimLimitedOnSession, limitedTypes } from '../db/claim-limited.ts'
import { topUpClaim } from './top-up-claim.ts'
import { LIMITS_REFRESH_MS } from '../config.ts'
import type { Executor } from '../db/database.ts'
import type { ClaimedJobRow } from '../db/rows.ts'

/** The claim loop of one worker pool. */
export interface Producer {
  start(): void
  /** A notification arrived: jobs may be waiting. */
  wake(): void
  /** A slot became free: claim again if the last claim suggested more work. */
  slotFreed(): void
  /** Stops claiming; resolves when no claim is in flight. */
  stop(): Promise<void>
}

/**
 * Creates the producer. It claims at most the pool's free slots, only when
 * there is reason to think work is waiting: a notification, a full previous
 * batch, or the jittered safety-net poll. Wake-ups in one tick coalesce into
 * one claim (setImmediate), so finishing ten jobs at once costs one claim.
 */
export function createProducer(args: {
  /** A claim session (connectClaimSession): its connections carry the claim settings. */
  session: Executor
  workerId: string
  leaseMs: number
  types: ReadonlyArray<string> | null
  pollIntervalMs: number
  log: Logger
  freeSlots(): number
  /** True while outcomes wait to be written: claiming more would only grow the backlog. */
  saturated(): boolean
  /** Claimed rows, and when their claim was sent (`performance.now()`): their leases run from no earlier. */
  onJobs(rows: ClaimedJobRow[], sentAt: number): void
}): Producer {
  const log = args.log.child({ component: 'producer' })
  let stopped = false
  let wanted = true
  let maybeMore = false
  let signal: (() => void) | null = null
  let loopDone: Promise<void> = Promise.resolve()

  const poke = () => {
    const s = signal
    if (!s) return
    signal = null
    setImmediate(s)
  }

  const waitForWork = () =>
    new Promise<void>((resolve) => {
      const jitter = 0.8 + Math.random() * 0.4
      const timer = setTimeout(() => {
        wanted = true
        signal = null
        resolve()
      }, args.pollIntervalMs * jitter)
      signal = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  // Which of our types are under concurrency or rate limits. The plain claim
  // skips limited types by itself and reports when it saw one of ours, so an
  // idle worker never polls for limits; on the limited path the list is
  // re-read every few seconds (a removed limit moves the type back).
  let limited: string[] = []
  let limitsReadAt = Number.NEGATIVE_INFINITY
  const readLimits = async () => {
    limited = await limitedTypes(args.session, args.types)
    limitsReadAt = performance.now()
  }
  const claim = async (free: number): Promise<ClaimedJobRow[]> => {
    if (limited.length > 0 && performance.now() - limitsReadAt > LIMITS_REFRESH_MS) await readLimits()
    const claimArgs = { workerId: args.workerId, limit: free, leaseMs: args.leaseMs, types: args.types }
    if (limited.length === 0) {
      const plain = await claimBatchOnSession(args.session, claimArgs)
      if (!plain.limitedTypes) return plain.rows
      await readLimits()
      const topped = await topUpClaim(args.session, { ...claimArgs, limited }, plain.rows, log)
      if (topped.retryInMs !== null) scheduleRetry(topped.retryInMs)
      return topped.rows
    }
    const { rows, retryInMs } = await claimLimitedOnSession(args.session, { ...claimArgs, limited })
    // Jobs waited for a rate-limit token: claim again when the bucket refills.
    if (retryInMs !== null) scheduleRetry(retryInMs)
    return rows
  }
  let retryTimer: NodeJS.Timeout | null = null
  const scheduleRetry = (ms: number) => {
    if (retryTimer || stopped) return
    retryTimer = setTimeout(() => {
      retryTimer = null
      wanted = true
      poke()
    }, Math.min(Math.max(ms, 5), args.pollIntervalMs))
    retryTimer.unref()
  }

  // The pause after a failed claim. stop() cuts it short, so a pool stopping
  // while the database is down does not sit out a 10 s backoff first; so does
  // wake(): a notification, or the listener's wake after it reconnected, says
  // the database answers again, and claims resume then rather than up to 10 s later.
  let endBackOff: (() => void) | null = null
  const backOff = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      endBackOff = () => {
        clearTimeout(timer)
        resolve()
      }
    }).finally(() => {
      endBackOff = null
    })

  const loop = async () => {
    let failures = 0
    while (!stopped) {
      const free = args.freeSlots()
      if ((wanted || maybeMore) && free > 0 && !args.saturated()) {
        wanted = false
        try {
          const sentAt = performance.now()
          const rows = await claim(free)
          failures = 0
          maybeMore = rows.length === free
          if (rows.length > 0) log.debug({ claimed: rows.length }, 'claimed jobs')
          args.onJobs(rows, sentAt)
        } catch (err) {
          failures++
          wanted = true
          log.error({ err }, 'claim failed')
          await backOff(Math.min(10_000, 100 * 2 ** failures))
        }
        continue
      }
      await waitForWork()
    }
  }

  return {
    start() {
      loopDone = loop()
    },
    wake() {
      wanted = true
      poke()
      endBackOff?.()
    },
    slotFreed() {
      if (wanted || maybeMore) poke()
    },
    async stop() {
      stopped = true
      if (retryTimer) clearTimeout(retryTimer)
      poke()
      endBackOff?.()
      await loopDone
    },
  }
}
