import { hostname } from 'node:os'
import { pino, type Logger } from 'pino'

/**
 * Paths pino replaces with `[redacted]`. Credentials reach logs by accident
 * (an error carrying a request, a config object logged whole), so the usual
 * carriers are covered even though nothing here logs them on purpose.
 */
export const REDACT_PATHS: ReadonlyArray<string> = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'databaseUrl',
  'connectionString',
  '*.databaseUrl',
  '*.connectionString',
  '*.password',
  '*.secret',
  '*.token',
]

/**
 * The process's one pino root logger (JSON to stdout). Components take
 * children of it: `log.child({ component: 'rescuer' })`.
 *
 * @example
 * const log = createRootLogger({ service: 'worker', level: config.logLevel })
 */
export function createRootLogger(options: { readonly service: string; readonly level: string }): Logger {
  return pino({
    level: options.level,
    base: { service: options.service, pid: process.pid, hostname: hostname() },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
  })
}
