import type { Logger } from 'pino'

/** A leader-only background service: one pass at a time, on a ticker. */
export interface MaintenanceService {
  readonly name: string
  /** Time between passes. */
  readonly intervalMs: number
  /** One pass; returns what it changed (logged at info only when non-zero). */
  runOnce(): Promise<Record<string, number>>
}

/** A running ticker for one service. */
export interface ServiceTicker {
  stop(): Promise<void>
}

/**
 * Runs `service.runOnce()` now and then every `intervalMs` (jittered ±10 %)
 * until stopped. A failing pass is logged and retried on the next tick: a
 * maintenance service must never take the process down.
 */
export function startTicker(service: MaintenanceService, log: Logger): ServiceTicker {
  const slog = log.child({ component: service.name })
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  let current: Promise<void> = Promise.resolve()

  const tick = () => {
    timer = null
    current = (async () => {
      try {
        const counts = await service.runOnce()
        if (Object.values(counts).some((n) => n > 0)) slog.info(counts, 'maintenance pass changed rows')
        else slog.debug('maintenance pass idle')
      } catch (err) {
        slog.error({ err }, 'maintenance pass failed')
      }
      if (!stopped) {
        timer = setTimeout(tick, service.intervalMs * (0.9 + Math.random() * 0.2))
        timer.unref()
      }
    })()
  }
  tick()
  return {
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await current
    },
  }
}
