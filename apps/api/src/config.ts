import type { PriorityName } from '@backroom/queue-core'
import { ConfigError, envInteger, envOneOf, isPostgresUrl, LOG_LEVELS, type LogLevel } from '@backroom/queue-core/runtime'
import { DEFAULT_STORE_MAX_PRIORITY, PRIORITY_NAMES } from './priority-policy.ts'
/** pino levels accepted in `LOG_LEVEL`. */
export { LOG_LEVELS, type LogLevel }

/** The API's port when `PORT` is unset. */
export const DEFAULT_PORT = 3000
/** Connections in the API's pool when `DB_POOL_MAX` is unset. */
export const DEFAULT_DB_POOL_MAX = 10
/** Connections kept open when idle when `DB_POOL_MIN` is unset. */
export const DEFAULT_DB_POOL_MIN = 0
/**
 * statement_timeout of the API's pool when `DB_STATEMENT_TIMEOUT_MS` is
 * unset. Every route's statement is index-served and takes milliseconds;
 * the client gives up 2 s after this, which bounds how long a request waits
 * on a connection that died silently before it answers 503. 60 s held
 * callers for a minute during a failover.
 */
export const DEFAULT_API_STATEMENT_TIMEOUT_MS = 15_000
/** How long a request waits for a free pool connection before 503, when `DB_POOL_ACQUIRE_TIMEOUT_MS` is unset. */
export const DEFAULT_DB_POOL_ACQUIRE_TIMEOUT_MS = 5_000

/** Jobs one `POST /v1/jobs/batch` may carry when `API_BATCH_LIMIT` is unset. */
export const DEFAULT_BATCH_LIMIT = 1_000
/** Largest request body in bytes when `API_BODY_LIMIT` is unset (413 beyond it). */
export const DEFAULT_BODY_LIMIT = 256 * 1024
/** Enqueues per second one store may make when `API_STORE_RATE` is unset (burst: twice that). */
export const DEFAULT_STORE_RATE = 100
/** BACKROOM_ADMIN_KEY must be at least this long: it is a platform key given as is. */
export const MIN_ADMIN_KEY_LENGTH = 32
/** Days API key audit rows are kept when `API_KEY_AUDIT_RETENTION_DAYS` is unset. */
export const DEFAULT_KEY_AUDIT_RETENTION_DAYS = 90
/** The longest retention `API_KEY_AUDIT_RETENTION_DAYS` may ask for (100 years). */
export const MAX_KEY_AUDIT_RETENTION_DAYS = 36_500
/** METRICS_KEY must be at least this long. */
export const MIN_METRICS_KEY_LENGTH = 16
/** How long /metrics reuses the queue figures it read from the database when `METRICS_CACHE_MS` is unset. */
export const DEFAULT_METRICS_CACHE_MS = 5_000
/** Bytes of feed uploads one store may keep when `API_UPLOAD_STORE_QUOTA_BYTES` is unset (1 GiB). */
export const DEFAULT_UPLOAD_STORE_QUOTA_BYTES = 1024 * 1024 * 1024
/** Uploads one store may start per minute when `API_UPLOAD_RATE_PER_MINUTE` is unset (also the burst). */
export const DEFAULT_UPLOAD_RATE_PER_MINUTE = 10
/** Hours an upload is kept when `UPLOAD_RETENTION_HOURS` is unset (longer while a live import uses it). */
export const DEFAULT_UPLOAD_RETENTION_HOURS = 72
export { DEFAULT_STORE_MAX_PRIORITY }

/** The API's settings, parsed once from the environment. */
export interface ApiConfig {
  /** Never log this: it may hold a password. */
  readonly databaseUrl: string
  readonly port: number
  readonly dbPoolMax: number
  readonly dbPoolMin: number
  /** `DB_STATEMENT_TIMEOUT_MS`: statement_timeout of the pool (the client-side timeout is 2 s more). */
  readonly dbStatementTimeoutMs: number
  /** `DB_POOL_ACQUIRE_TIMEOUT_MS`: wait for a free pool connection before 503. */
  readonly dbPoolAcquireTimeoutMs: number
  readonly logLevel: LogLevel
  /** Optional: shares enqueue rate limits between API instances. Never log it. */
  readonly redisUrl: string | null
  /** Enables POST /v1/internal/process-pending (the only route that loads handler code). Never log it. */
  readonly cronSecret: string | null
  /** A platform key accepted as given (bootstrapping, ops automation). Never log it. */
  readonly adminKey: string | null
  /** The admin key being rotated out, accepted as well (audited as `admin-previous`). Never log it. */
  readonly previousAdminKey: string | null
  /** Audit rows of API keys older than this many days are deleted. */
  readonly keyAuditRetentionDays: number
  readonly batchLimit: number
  readonly bodyLimit: number
  /** Enqueues per second per store (a token bucket; burst twice the rate). */
  readonly storeRate: number
  /** The highest priority a store key may ask for; platform keys may ask for any. */
  readonly storeMaxPriority: PriorityName
  /** When set, GET /metrics needs `Authorization: Bearer <metricsKey>`. Never log it. */
  readonly metricsKey: string | null
  /** How long /metrics reuses the queue figures it read (0: read at each scrape, still one read at a time). */
  readonly metricsCacheMs: number
  /** Bytes of feed uploads one store may keep (413 upload_quota_exceeded beyond it). */
  readonly uploadQuotaBytes: number
  /** Uploads one store may start per minute (429 beyond it). */
  readonly uploadRatePerMinute: number
  /** Uploads older than this are deleted unless a live import job uses them. */
  readonly uploadRetentionHours: number
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
  const dbStatementTimeoutMs = envInteger(env, 'DB_STATEMENT_TIMEOUT_MS', DEFAULT_API_STATEMENT_TIMEOUT_MS, 100, problems)
  const dbPoolAcquireTimeoutMs = envInteger(env, 'DB_POOL_ACQUIRE_TIMEOUT_MS', DEFAULT_DB_POOL_ACQUIRE_TIMEOUT_MS, 100, problems)
  const logLevel = envOneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info', problems)
  const redisUrl = env.REDIS_URL?.trim() || null
  if (redisUrl !== null && !/^rediss?:\/\//.test(redisUrl)) problems.push('REDIS_URL must be a redis:// or rediss:// URL')
  const cronSecret = env.CRON_SECRET?.trim() || null
  if (cronSecret !== null && cronSecret.length < 16) problems.push('CRON_SECRET must be at least 16 characters')
  const adminKey = env.BACKROOM_ADMIN_KEY?.trim() || null
  if (adminKey !== null && adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    problems.push(`BACKROOM_ADMIN_KEY must be at least ${MIN_ADMIN_KEY_LENGTH} characters`)
  }
  const previousAdminKey = env.BACKROOM_ADMIN_KEY_PREVIOUS?.trim() || null
  if (previousAdminKey !== null) {
    if (previousAdminKey.length < MIN_ADMIN_KEY_LENGTH) problems.push(`BACKROOM_ADMIN_KEY_PREVIOUS must be at least ${MIN_ADMIN_KEY_LENGTH} characters`)
    if (adminKey === null) problems.push('BACKROOM_ADMIN_KEY_PREVIOUS is set without BACKROOM_ADMIN_KEY: set the new admin key too (the previous one is accepted only beside it)')
    else if (previousAdminKey === adminKey) problems.push('BACKROOM_ADMIN_KEY_PREVIOUS must differ from BACKROOM_ADMIN_KEY (it is the key being rotated out)')
  }
  const keyAuditRetentionDays = envInteger(env, 'API_KEY_AUDIT_RETENTION_DAYS', DEFAULT_KEY_AUDIT_RETENTION_DAYS, 1, problems)
  // A cut-off before year 0 is no date at all: the sweep would fail at every run.
  if (keyAuditRetentionDays > MAX_KEY_AUDIT_RETENTION_DAYS) problems.push(`API_KEY_AUDIT_RETENTION_DAYS must be at most ${MAX_KEY_AUDIT_RETENTION_DAYS}`)
  const batchLimit = envInteger(env, 'API_BATCH_LIMIT', DEFAULT_BATCH_LIMIT, 1, problems)
  const bodyLimit = envInteger(env, 'API_BODY_LIMIT', DEFAULT_BODY_LIMIT, 1024, problems)
  const storeRate = envInteger(env, 'API_STORE_RATE', DEFAULT_STORE_RATE, 1, problems)
  const storeMaxPriority = envOneOf(env, 'API_STORE_MAX_PRIORITY', PRIORITY_NAMES, DEFAULT_STORE_MAX_PRIORITY, problems)
  const metricsKey = env.METRICS_KEY?.trim() || null
  if (metricsKey !== null && metricsKey.length < MIN_METRICS_KEY_LENGTH) problems.push(`METRICS_KEY must be at least ${MIN_METRICS_KEY_LENGTH} characters`)
  const metricsCacheMs = envInteger(env, 'METRICS_CACHE_MS', DEFAULT_METRICS_CACHE_MS, 0, problems)
  const uploadQuotaBytes = envInteger(env, 'API_UPLOAD_STORE_QUOTA_BYTES', DEFAULT_UPLOAD_STORE_QUOTA_BYTES, 1, problems)
  const uploadRatePerMinute = envInteger(env, 'API_UPLOAD_RATE_PER_MINUTE', DEFAULT_UPLOAD_RATE_PER_MINUTE, 1, problems)
  const uploadRetentionHours = envInteger(env, 'UPLOAD_RETENTION_HOURS', DEFAULT_UPLOAD_RETENTION_HOURS, 1, problems)

  if (problems.length > 0) throw new ConfigError(problems)
  return {
    databaseUrl,
    port,
    dbPoolMax,
    dbPoolMin,
    dbStatementTimeoutMs,
    dbPoolAcquireTimeoutMs,
    logLevel,
    redisUrl,
    cronSecret,
    adminKey,
    previousAdminKey,
    keyAuditRetentionDays,
    batchLimit,
    bodyLimit,
    storeRate,
    storeMaxPriority,
    metricsKey,
    metricsCacheMs,
    uploadQuotaBytes,
    uploadRatePerMinute,
    uploadRetentionHours,
  }
}
