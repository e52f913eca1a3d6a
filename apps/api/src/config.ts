import { ConfigError, envInteger, envOneOf, isPostgresUrl, LOG_LEVELS, type LogLevel } from '@backroom/queue-core/runtime'
/** pino levels accepted in `LOG_LEVEL`. */
export { LOG_LEVELS, type LogLevel }

/** The API's port when `PORT` is unset. */
export const DEFAULT_PORT = 3000
/** Connections in the API's pool when `DB_POOL_MAX` is unset. */
export const DEFAULT_DB_POOL_MAX = 10
/** Connections kept open when idle when `DB_POOL_MIN` is unset. */
export const DEFAULT_DB_POOL_MIN = 0

/** Jobs one `POST /v1/jobs/batch` may carry when `API_BATCH_LIMIT` is unset. */
export const DEFAULT_BATCH_LIMIT = 1_000
/** Largest request body in bytes when `API_BODY_LIMIT` is unset (413 beyond it). */
export const DEFAULT_BODY_LIMIT = 256 * 1024
/** Enqueues per second one store may make when `API_STORE_RATE` is unset (burst: twice that). */
export const DEFAULT_STORE_RATE = 100
/** BACKROOM_ADMIN_KEY must be at least this long: it is a platform key given as is. */
export const MIN_ADMIN_KEY_LENGTH = 32

/** The API's settings, parsed once from the environment. */
export interface ApiConfig {
  /** Never log this: it may hold a password. */
  readonly databaseUrl: string
  readonly port: number
  readonly dbPoolMax: number
  readonly dbPoolMin: number
  readonly logLevel: LogLevel
  /** Optional: shares enqueue rate limits between API instances. Never log it. */
  readonly redisUrl: string | null
  /** Enables POST /v1/internal/process-pending (the only route that loads handler code). Never log it. */
  readonly cronSecret: string | null
  /** A platform key accepted as given (bootstrapping, ops automation). Never log it. */
  readonly adminKey: string | null
  readonly batchLimit: number
  readonly bodyLimit: number
  /** Enqueues per second per store (a token bucket; burst twice the rate). */
  readonly storeRate: number
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
  const redisUrl = env.REDIS_URL?.trim() || null
  if (redisUrl !== null && !/^rediss?:\/\//.test(redisUrl)) problems.push('REDIS_URL must be a redis:// or rediss:// URL')
  const cronSecret = env.CRON_SECRET?.trim() || null
  if (cronSecret !== null && cronSecret.length < 16) problems.push('CRON_SECRET must be at least 16 characters')
  const adminKey = env.BACKROOM_ADMIN_KEY?.trim() || null
  if (adminKey !== null && adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    problems.push(`BACKROOM_ADMIN_KEY must be at least ${MIN_ADMIN_KEY_LENGTH} characters`)
  }
  const batchLimit = envInteger(env, 'API_BATCH_LIMIT', DEFAULT_BATCH_LIMIT, 1, problems)
  const bodyLimit = envInteger(env, 'API_BODY_LIMIT', DEFAULT_BODY_LIMIT, 1024, problems)
  const storeRate = envInteger(env, 'API_STORE_RATE', DEFAULT_STORE_RATE, 1, problems)

  if (problems.length > 0) throw new ConfigError(problems)
  return { databaseUrl, port, dbPoolMax, dbPoolMin, logLevel, redisUrl, cronSecret, adminKey, batchLimit, bodyLimit, storeRate }
}
