import { pino, type Logger } from 'pino'
import { ConfigError } from './config.ts'

/**
 * Logs why the process could not start and exits 1. Configuration errors
 * list every bad variable; anything else is logged as the error it is.
 * Works before the root logger exists (bad `LOG_LEVEL` included).
 */
export function exitOnStartupError(err: unknown, log: Logger = pino({ base: { service: 'worker' } })): never {
  if (err instanceof ConfigError) log.fatal({ problems: err.problems }, 'invalid configuration')
  else log.fatal({ err }, 'startup failed')
  process.exit(1)
}
