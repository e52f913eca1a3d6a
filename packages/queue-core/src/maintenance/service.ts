import type { Logger } from 'pino'
import type { LeaderLease } from './leader.ts'

/** A leader-only background service: one pass at a time, on a ticker. */
export interface MaintenanceService {
  readonly name: string
  /** Longest time between passes. */
  readonly intervalMs: number
  /**
   * One pass; returns what it changed (logged at info only when non-zero).
   * `lease` is the leadership the pass runs under: a service whose
   * statements can fence themselves on it (renew it and change nothing once
   * it is lost) passes it down; the ticker has checked it before the pass.
   */
  runOnce(lease?: LeaderLease): Promise<Record<string, number>>
  /**
   * After a pass: how soon the next one is needed, when the service knows
   * (e.g. the next scheduled job is due in 300 ms). Capped by `intervalMs`.
   * Lets an idle system sleep long without making due work late.
   */
  nextDelayMs?(): number | undefined
}

/** A running ticker for one service. */
export interface ServiceTicker {
  /** Runs a pass soon (coalesced), e.g. on a notification that work became due. */
  poke(): void
  stop(): Promise<void>
}

/** Wait before trying again when the lease could not be confirmed before a pass (e.g. the database did not answer). */
const UNCONFIRMED_RETRY_MS = 1_000

/**
 * Runs `service.runOnce()` now and then again after `nextDelayMs()` or
 * `intervalMs` (jittered ±10 %), whichever is sooner, until stopped. A
 * failing pass is logged and retried on the next tick: a maintenance service
 * must never take the process down.
 *
 * With a `lease`, every pass is fenced: it starts only after
 * `lease.ensure()` has confirmed the leadership (by the local monotonic
 * clock, renewing in the database when little of the lease is left). A
 * leader frozen while its timers were due therefore runs nothing when it
 * resumes: its lease ran out by its own clock, and the leader deposes
 * itself and stops this ticker. Each pass is logged with its term, start and
 * duration, so passes of different terms can be told apart.
 */
export function startTicker(service: MaintenanceService, log: Logger, lease?: LeaderLease): ServiceTicker {
  const slog = log.child({ component: service.name })
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  let running = false
  let pokedWhileRunning = false
  let current: Promise<void> = Promise.resolve()

  const schedule = (ms: number) => {
    if (stopped) return
    if (timer) clearTimeout(timer)
    timer = setTimeout(tick, ms)
    timer.unref()
  }

  const pass = async (): Promise<number> => {
    let delay = service.intervalMs * (0.9 + Math.random() * 0.2)
    // Not confirmed: either lost (the leader stops this ticker) or unknown for now.
    if (lease && !(await lease.ensure())) return Math.min(delay, UNCONFIRMED_RETRY_MS)
    const startedAt = performance.now()
    const term = lease?.term
    try {
      const counts = await service.runOnce(lease)
      const durationMs = Math.round(performance.now() - startedAt)
      if (Object.values(counts).some((n) => n > 0)) slog.info({ ...counts, term, durationMs }, 'maintenance pass changed rows')
      else slog.debug({ term, durationMs }, 'maintenance pass idle')
      const next = service.nextDelayMs?.()
      if (next !== undefined) delay = Math.min(delay, Math.max(0, next))
    } catch (err) {
      slog.error({ err, term }, 'maintenance pass failed')
    }
    return delay
  }

  const tick = () => {
    timer = null
    running = true
    current = pass().then((delay) => {
      running = false
      if (pokedWhileRunning) {
        pokedWhileRunning = false
        delay = 0
      }
      schedule(delay)
    })
  }
  tick()
  return {
    poke() {
      if (stopped) return
      if (running) pokedWhileRunning = true
      else schedule(0)
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await current
    },
  }
}
