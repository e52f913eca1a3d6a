import type { Logger } from 'pino'

/** A leader-only background service: one pass at a time, on a ticker. */
export interface MaintenanceService {
  readonly name: string
  /** Longest time between passes. */
  readonly intervalMs: number
  /** One pass; returns what it changed (logged at info only when non-zero). */
  runOnce(): Promise<Record<string, number>>
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

/**
 * Runs `service.runOnce()` now and then again after `nextDelayMs()` or
 * `intervalMs` (jittered ±10 %), whichever is sooner, until stopped. A
 * failing pass is logged and retried on the next tick: a maintenance service
 * must never take the process down.
 */
export function startTicker(service: MaintenanceService, log: Logger): ServiceTicker {
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

  const tick = () => {
    timer = null
    running = true
    current = (async () => {
      let delay = service.intervalMs * (0.9 + Math.random() * 0.2)
      try {
        const counts = await service.runOnce()
        if (Object.values(counts).some((n) => n > 0)) slog.info(counts, 'maintenance pass changed rows')
        else slog.debug('maintenance pass idle')
        const next = service.nextDelayMs?.()
        if (next !== undefined) delay = Math.min(delay, Math.max(0, next))
      } catch (err) {
        slog.error({ err }, 'maintenance pass failed')
      }
      running = false
      if (pokedWhileRunning) {
        pokedWhileRunning = false
        delay = 0
      }
      schedule(delay)
    })()
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
