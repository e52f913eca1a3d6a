import { ConfigError, envInteger, envOneOf, isPostgresUrl, LOG_LEVELS, type LogLevel } from '@backroom/queue-core/runtime'
import { DEFAULT_CONCURRENCY, DEFAULT_PREFETCH, DEFAULT_SHUTDOWN_GRACE_MS } from '@backroom/queue-core'

/** pino levels accepted in `LOG_LEVEL`. */
export { LOG_LEVELS, type LogLevel }

/** Connections in the worker's pool when `DB_POOL_MAX` is unset: claims, completions, heartbeats, maintenance. */
export const DEFAULT_DB_POOL_MAX = 10
/** Connections kept open when idle when `DB_POOL_MIN` is unset. */
export const DEFAULT_DB_POOL_MIN = 0
/**
 * statement_timeout of the worker's pool when `DB_STATEMENT_TIMEOUT_MS` is
 * unset. The worker's statements (completions, heartbeats, maintenance
 * batches) take milliseconds; the client gives up 2 s after this, so it is
 * also how long a worker waits on a connection that died silently (a
 * failover, a blackholed network) before it opens a new one. 60 s made
 * recovery after such a fault take a minute.
 */
export const DEFAULT_WORKER_STATEMENT_TIMEOUT_MS = 15_000
/** How long a statement waits for a free pool connection before failing, when `DB_POOL_ACQUIRE_TIMEOUT_MS` is unset. */
export const DEFAULT_DB_POOL_ACQUIRE_TIMEOUT_MS = 10_000

/** The worker's settings, parsed once from the environment. */
export interface WorkerConfig {
  /** Never log this: it may hold a password. */
  readonly databaseUrl: string
  /** `WORKER_CONCURRENCY`: jobs run at once. */
  readonly concurrency: number
  /** `WORKER_PREFETCH`: claimed jobs held beyond the running ones (throughput for short jobs; 0 for long ones). */
  readonly prefetch: number
  /** `WORKER_TYPES`: job types to run; null runs every registered type. */
  readonly types: ReadonlyArray<string> | null
  readonly dbPoolMax: number
  readonly dbPoolMin: number
  /** `DB_STATEMENT_TIMEOUT_MS`: statement_timeout of the pool (the client-side timeout is 2 s more). */
  readonly dbStatementTimeoutMs: number
  /** `DB_POOL_ACQUIRE_TIMEOUT_MS`: wait for a free pool connection before a clear error. */
  readonly dbPoolAcquireTimeoutMs: number
  readonly logLevel: LogLevel
  /** `WORKER_SHUTDOWN_GRACE_MS`: how long SIGTERM waits for running jobs before releasing them. */
  readonly shutdownGraceMs: number
  /** `WORKER_METRICS_PORT`: serve Prometheus metrics on this port; null (unset) serves none. */
  readonly metricsPort: number | null
}

/** Thrown when the environment does not describe a runnable service. */
export { ConfigError }

/**
 * Reads the worker's configuration from `env`, reporting every bad variable
 * at once (so a deploy fails on the first start, not one variable per retry).
 * Values are never echoed back: `DATABASE_URL` may carry a password.
 *
 * @example
 * const config = loadConfig(process.env, { knownTypes: handlers.map((h) => h.type) })
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: { readonly knownTypes?: ReadonlyArray<string> } = {},
): WorkerConfig {
  const problems: string[] = []
  const databaseUrl = env.DATABASE_URL?.trim() ?? ''
  if (databaseUrl === '') problems.push('DATABASE_URL is required (a postgres:// connection string)')
  else if (!isPostgresUrl(databaseUrl)) problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL')

  const concurrency = envInteger(env, 'WORKER_CONCURRENCY', DEFAULT_CONCURRENCY, 1, problems)
  const prefetch = envInteger(env, 'WORKER_PREFETCH', DEFAULT_PREFETCH, 0, problems)
  const dbPoolMax = envInteger(env, 'DB_POOL_MAX', DEFAULT_DB_POOL_MAX, 1, problems)
  const dbPoolMin = envInteger(env, 'DB_POOL_MIN', DEFAULT_DB_POOL_MIN, 0, problems)
  if (dbPoolMin > dbPoolMax) problems.push('DB_POOL_MIN must not exceed DB_POOL_MAX')
  const dbStatementTimeoutMs = envInteger(env, 'DB_STATEMENT_TIMEOUT_MS', DEFAULT_WORKER_STATEMENT_TIMEOUT_MS, 100, problems)
  const dbPoolAcquireTimeoutMs = envInteger(env, 'DB_POOL_ACQUIRE_TIMEOUT_MS', DEFAULT_DB_POOL_ACQUIRE_TIMEOUT_MS, 100, problems)
  const shutdownGraceMs = envInteger(env, 'WORKER_SHUTDOWN_GRACE_MS', DEFAULT_SHUTDOWN_GRACE_MS, 0, problems)
  const logLevel = envOneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info', problems)

  const listed = (env.WORKER_TYPES ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
  const types = listed.length === 0 ? null : [...new Set(listed)]
  if (types && options.knownTypes) {
    const unknown = types.filter((t) => !options.knownTypes?.includes(t))
    if (unknown.length > 0) problems.push(`WORKER_TYPES names job types without a handler: ${unknown.join(', ')}`)
  }

  const metricsPort = env.WORKER_METRICS_PORT?.trim() ? envInteger(env, 'WORKER_METRICS_PORT', 0, 0, problems) : null
  if (metricsPort !== null && metricsPort > 65_535) problems.push('WORKER_METRICS_PORT must be at most 65535')

  if (problems.length > 0) throw new ConfigError(problems)
  return { databaseUrl, concurrency, prefetch, types, dbPoolMax, dbPoolMin, dbStatementTimeoutMs, dbPoolAcquireTimeoutMs, logLevel, shutdownGraceMs, metricsPort }
}
