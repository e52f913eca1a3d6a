import type { Logger } from 'pino'

/**
 * Runs `shutdown` on the first SIGTERM or SIGINT, then exits 0 (1 if it
 * throws). Later signals are logged and ignored rather than forcing an exit:
 * under `pnpm start` a terminal's Ctrl-C and the forwarded signal both
 * arrive, and the second must not cut the drain short.
 */
export function onShutdownSignal(log: Logger, shutdown: () => Promise<void>): void {
  let started = false
  const handle = (signal: NodeJS.Signals) => {
    if (started) {
      log.warn({ signal }, 'shutdown already in progress')
      return
    }
    started = true
    log.info({ signal }, 'shutting down')
    shutdown().then(
      () => {
        log.info('shutdown complete')
        process.exit(0)
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', handle)
  process.on('SIGINT', handle)
}
