/** pino levels accepted in `LOG_LEVEL`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

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

/** The environment does not describe a runnable API; `problems` names each variable at fault. */
export class ConfigError extends Error {
  readonly code = 'invalid_config' as const
  readonly problems: ReadonlyArray<string>
  constructor(problems: ReadonlyArray<string>) {
    super(`invalid configuration: ${problems.join('; ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

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

  const port = integer(env, 'PORT', DEFAULT_PORT, 0, problems)
  if (port > 65_535) problems.push('PORT must be at most 65535')
  const dbPoolMax = integer(env, 'DB_POOL_MAX', DEFAULT_DB_POOL_MAX, 1, problems)
  const dbPoolMin = integer(env, 'DB_POOL_MIN', DEFAULT_DB_POOL_MIN, 0, problems)
  if (dbPoolMin > dbPoolMax) problems.push('DB_POOL_MIN must not exceed DB_POOL_MAX')
  const logLevel = oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info', problems)

  if (problems.length > 0) throw new ConfigError(problems)
  return { databaseUrl, port, dbPoolMax, dbPoolMin, logLevel }
}

function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol)
  } catch {
    return false
  }
}

function integer(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallback: number,
  min: number,
  problems: string[],
): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min) {
    problems.push(`${name} must be an integer >= ${min}`)
    return fallback
  }
  return value
}

function oneOf<T extends string>(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  allowed: ReadonlyArray<T>,
  fallback: T,
  problems: string[],
): T {
  const raw = env[name]?.trim().toLowerCase()
  if (raw === undefined || raw === '') return fallback
  if ((allowed as ReadonlyArray<string>).includes(raw)) return raw as T
  problems.push(`${name} must be one of ${allowed.join(', ')}`)
  return fallback
}
