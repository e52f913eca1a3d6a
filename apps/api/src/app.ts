import type { Db, PriorityName } from '@backroom/queue-core'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import {
  DEFAULT_BATCH_LIMIT,
  DEFAULT_BODY_LIMIT,
  DEFAULT_KEY_AUDIT_RETENTION_DAYS,
  DEFAULT_METRICS_CACHE_MS,
  DEFAULT_STORE_MAX_PRIORITY,
  DEFAULT_STORE_RATE,
  DEFAULT_UPLOAD_RATE_PER_MINUTE,
  DEFAULT_UPLOAD_RETENTION_HOURS,
  DEFAULT_UPLOAD_STORE_QUOTA_BYTES,
} from './config.ts'
import { createKeyAuditRetention, DEFAULT_KEY_AUDIT_SWEEP_INTERVAL_MS } from './key-audit-retention.ts'
import { createKeyUseAudit, DEFAULT_KEY_USE_FLUSH_MS } from './key-use-audit.ts'
import { authPlugin } from './plugins/auth.ts'
import { errorHandler, frameworkErrorHandler, notFoundHandler } from './plugins/error-handler.ts'
import { fairSharePlugin } from './plugins/fair-share.ts'
import { metricsPlugin } from './plugins/metrics.ts'
import { openapiPlugin } from './plugins/openapi.ts'
import { storeScopePlugin } from './plugins/store-scope.ts'
import { healthRoutes } from './routes/health.ts'
import { processPendingRoute, type LoadHandlers } from './routes/internal/process-pending.ts'
import { jobsRoutes } from './routes/v1/jobs.ts'
import { keysRoutes } from './routes/v1/keys.ts'
import { statsRoutes } from './routes/v1/stats.ts'
import { uploadsRoutes } from './routes/v1/uploads.ts'
import { DEFAULT_UPLOAD_SWEEP_INTERVAL_MS } from './upload-retention.ts'

/** What the app needs from its process: built by server.ts, or by a test. */
export interface AppDeps {
  /** The API's database pool; the app uses it but never closes it. */
  readonly db: Db
  /** The process's pino root logger; omitted in tests (silent). */
  readonly logger?: FastifyBaseLogger
  /** /readyz's time limit for `select 1` (and Redis PING). */
  readonly readyTimeoutMs?: number
  /** Shared enqueue rate limits between instances (REDIS_URL); in-process buckets without it. */
  readonly redis?: Redis | null
  /** BACKROOM_ADMIN_KEY. */
  readonly adminKey?: string | null
  /** BACKROOM_ADMIN_KEY_PREVIOUS: accepted as well during a rotation (needs adminKey). */
  readonly previousAdminKey?: string | null
  /** How often counted key uses are written to the audit (default 5 s); null: only at close. */
  readonly keyUseFlushMs?: number | null
  /** API_KEY_AUDIT_RETENTION_DAYS: audit rows older than this are deleted (default 90). */
  readonly keyAuditRetentionDays?: number
  /** Period of the audit retention sweep (default 1 h); null: none. */
  readonly keyAuditSweepIntervalMs?: number | null
  /** CRON_SECRET: enables POST /v1/internal/process-pending. */
  readonly cronSecret?: string | null
  /**
   * How the drain endpoint gets handler code, only when it is called (the
   * API never loads handlers otherwise). Default: import @backroom/handlers.
   */
  readonly loadHandlers?: LoadHandlers
  readonly batchLimit?: number
  /** Largest feed file `POST /v1/uploads` accepts, in bytes (default 512 MiB). */
  readonly uploadLimit?: number
  /** Bytes one store's uploads may hold together (default 1 GiB). */
  readonly uploadQuotaBytes?: number
  /** Uploads one store may start per minute (default 10). */
  readonly uploadRatePerMinute?: number
  /** Hours an upload is kept unless a live import job names it (default 72). */
  readonly uploadRetentionHours?: number
  /** Period of the background sweep of expired uploads (default 10 min); null: none. */
  readonly uploadSweepIntervalMs?: number | null
  readonly bodyLimit?: number
  /** Enqueues per second per store. */
  readonly storeRate?: number
  /** The highest priority a store key may ask for (default normal); platform keys may ask for any. */
  readonly storeMaxPriority?: PriorityName
  /** METRICS_KEY: when set, GET /metrics needs `Authorization: Bearer <key>`. */
  readonly metricsKey?: string | null
  /** How long /metrics reuses the queue figures it read (METRICS_CACHE_MS, default 5,000 ms). */
  readonly metricsCacheMs?: number
  /** The statement timeout of the metrics figures read (default 2,000 ms). */
  readonly metricsQueryTimeoutMs?: number
  /** The row-secured role store-key work runs as (default queue-core's STORE_ROLE); tests name a missing one. */
  readonly storeRole?: string
}

/**
 * Builds the Fastify app: error handling, then cross-cutting plugins (OpenAPI
 * first, so it sees every route; metrics; auth), then routes, in load order.
 * Never listens: server.ts does, tests call `inject()` or `listen({ port: 0 })`.
 *
 * @example
 * const app = buildApp({ db })
 * const res = await app.inject({ method: 'GET', url: '/healthz' })
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const app: FastifyInstance = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // Fastify's 503 while closing, so a load balancer drains us during SIGTERM.
    return503OnClosing: true,
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    frameworkErrors: frameworkErrorHandler,
  })

  // While closing, answers end their connection: a keep-alive client would
  // otherwise hold the server open for the keep-alive timeout (72 s) after
  // its last in-flight request finished, past most platforms' stop timeout.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close')
    return payload
  })

  // Set on the root before any route plugin: every encapsulated context inherits them.
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)

  app.register(openapiPlugin)
  app.register(metricsPlugin, {
    db: deps.db,
    key: deps.metricsKey ?? null,
    cacheMs: deps.metricsCacheMs ?? DEFAULT_METRICS_CACHE_MS,
    queryTimeoutMs: deps.metricsQueryTimeoutMs,
  })
  // Key uses are counted by the auth hook and written every few seconds;
  // the last write happens at close, after the last request was answered
  // (Fastify runs these onClose hooks after the HTTP server has closed).
  const keyUses = createKeyUseAudit({
    db: deps.db,
    log: app.log,
    flushIntervalMs: deps.keyUseFlushMs === undefined ? DEFAULT_KEY_USE_FLUSH_MS : deps.keyUseFlushMs,
  })
  const keyAuditRetention = createKeyAuditRetention({
    db: deps.db,
    log: app.log,
    retentionDays: deps.keyAuditRetentionDays ?? DEFAULT_KEY_AUDIT_RETENTION_DAYS,
    intervalMs: deps.keyAuditSweepIntervalMs === undefined ? DEFAULT_KEY_AUDIT_SWEEP_INTERVAL_MS : deps.keyAuditSweepIntervalMs,
  })
  app.addHook('onReady', async () => {
    keyUses.start()
    keyAuditRetention.start()
  })
  app.addHook('onClose', async () => {
    await keyAuditRetention.stop()
    await keyUses.stop()
  })
  app.register(authPlugin, { db: deps.db, adminKey: deps.adminKey ?? null, previousAdminKey: deps.previousAdminKey ?? null, keyUses })
  // request.withDb: every route's database work, a store key's as the row-secured store role.
  app.register(storeScopePlugin, { db: deps.db, ...(deps.storeRole === undefined ? {} : { role: deps.storeRole }) })
  // After auth (it admits by the key's store), before the routes it guards.
  app.register(fairSharePlugin, { poolMax: deps.db.pool.options.max, maxWaitMs: deps.db.pool.options.connectionTimeoutMillis })

  app.register(healthRoutes, { db: deps.db, redis: deps.redis ?? null, readyTimeoutMs: deps.readyTimeoutMs })
  app.register(jobsRoutes, {
    redis: deps.redis ?? null,
    batchLimit: deps.batchLimit ?? DEFAULT_BATCH_LIMIT,
    storeRate: deps.storeRate ?? DEFAULT_STORE_RATE,
    storeMaxPriority: deps.storeMaxPriority ?? DEFAULT_STORE_MAX_PRIORITY,
  })
  app.register(keysRoutes, { db: deps.db })
  app.register(uploadsRoutes, {
    db: deps.db,
    redis: deps.redis ?? null,
    maxBytes: deps.uploadLimit,
    quotaBytes: deps.uploadQuotaBytes ?? DEFAULT_UPLOAD_STORE_QUOTA_BYTES,
    ratePerMinute: deps.uploadRatePerMinute ?? DEFAULT_UPLOAD_RATE_PER_MINUTE,
    retentionHours: deps.uploadRetentionHours ?? DEFAULT_UPLOAD_RETENTION_HOURS,
    sweepIntervalMs: deps.uploadSweepIntervalMs === undefined ? DEFAULT_UPLOAD_SWEEP_INTERVAL_MS : deps.uploadSweepIntervalMs,
  })
  app.register(statsRoutes)
  app.register(processPendingRoute, { db: deps.db, cronSecret: deps.cronSecret ?? null, loadHandlers: deps.loadHandlers })
  return app
}
