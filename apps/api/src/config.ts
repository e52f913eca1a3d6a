import { ConfigError, envInteger, envOneOf, isPostgresUrl, LOG_LEVELS, type LogLevel } from '@backroom/queue-core/runtime'
/** pino levels accepted in `LOG_LEVEL`. */
export { LOG_LEVELS, type LogLevel }

/** The API's port when `PORT` is unset. */
export const DEFAULT_PORT = 3000
/** Connections in the API's pool when `DB_POOL_MAX` is unset. */
export const DEFAULT_DB_POOL_MAX = 10
/** Connections kept open when idle when `DB_POOL_MIN` is unset. */
export const DEFAULT_DB_POOL_MIN = 0

/** The API's settings, parsed once from the environment. */
export interface ApiConfig {
  /** Never log this: it may hold a password. */
  readonly databaseUrl: string
  readonly port: number
  readonly dbPoolMax: number
  readonly dbPoolMin: number
  readonly logLevel: LogLevel
}

/** Thrown when the environment does not describe a runnable service. */
export { ConfigError }

/**
 * Reads the API's configuration from `env`, reporting every bad variable at
 * once. Values are never echoed back: `DATABASE_URL` may carry a password.
 * Hand-written rather than a schema: every variable is a string, and the
 * messages name the variable and the rule, which is all an operator needs.
 *
 * @example
 * const config = loadConfig(process.env)
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env): ApiConfig {
  const problems: string[] = []
  const databaseUrl = env.DATABASE_URL?.trim() ?? ''
  if (databaseUrl === '') problems.push('DATABASE_URL is required (a postgres:// connection string)')
  else if (!isPostgresUrl(databaseUrl)) problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL')

  const port = envInteger(env, 'PORT', DEFAULT_PORT, 0, problems)
  if (port > 65_535) problems.push('PORT must be at most 65535')
  const dbPoolMax = envInteger(env, 'DB_POOL_MAX', DEFAULT_DB_POOL_MAX, 1, problems)
  const dbPoolMin = envInteger(env, 'DB_POOL_MIN', DEFAULT_DB_POOL_MIN, 0, problems)
  if (dbPoolMin > dbPoolMax) problems.push('DB_POOL_MIN must not exceed DB_POOL_MAX')
  const logLevel = envOneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info', problems)

  if (problems.length > 0) throw new ConfigError(problems)
  return { databaseUrl, port, dbPoolMax, dbPoolMin, logLevel }
}
