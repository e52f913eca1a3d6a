/**
 * API process entry (`pnpm start:api`): migrates, listens on PORT (3000) on
 * every interface, and on SIGTERM stops accepting, finishes in-flight
 * requests, closes the pool and exits 0. Configuration: see config.ts.
 */
import { connect, migrate } from '@backroom/queue-core'
import { migrateShop } from '@backroom/handlers/uploads'
import { Redis } from 'ioredis'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'
import { exitOnStartupError } from './exit-on-startup-error.ts'
import { createRootLogger, onShutdownSignal } from '@backroom/queue-core/runtime'

try {
  const config = loadConfig(process.env)
  const log = createRootLogger({ service: 'api', level: config.logLevel })
  const db = connect({
    connectionString: config.databaseUrl,
    max: config.dbPoolMax,
    min: config.dbPoolMin,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    acquireTimeoutMs: config.dbPoolAcquireTimeoutMs,
    applicationName: 'backroom-api',
  })
  // Optional: shares enqueue rate limits between API instances. Lazy, so a
  // Redis outage never stops start-up (the limiter falls back in-process).
  const redis = config.redisUrl === null ? null : new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  redis?.on('error', (err: Error) => log.warn({ errCode: (err as { code?: string }).code }, 'redis error'))
  const app = buildApp({
    db,
    logger: log,
    redis,
    adminKey: config.adminKey,
    previousAdminKey: config.previousAdminKey,
    keyAuditRetentionDays: config.keyAuditRetentionDays,
    cronSecret: config.cronSecret,
    batchLimit: config.batchLimit,
    bodyLimit: config.bodyLimit,
    storeRate: config.storeRate,
    storeMaxPriority: config.storeMaxPriority,
    metricsKey: config.metricsKey,
    metricsCacheMs: config.metricsCacheMs,
    uploadQuotaBytes: config.uploadQuotaBytes,
    uploadRatePerMinute: config.uploadRatePerMinute,
    uploadRetentionHours: config.uploadRetentionHours,
  })
  const starting = (async () => {
    // Idempotent and advisory-locked: API and worker may both start at once.
    // The shop's tables too: feed uploads land there before any worker has started.
    const applied = [...(await migrate({ connectionString: config.databaseUrl })), ...(await migrateShop(config.databaseUrl))]
    await redis?.connect().catch((err: unknown) => log.warn({ errCode: (err as { code?: string }).code }, 'redis not reachable at start-up; rate limits stay in-process until it is'))
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied')
    await app.listen({ port: config.port, host: '0.0.0.0' })
  })()
  onShutdownSignal(log, async () => {
    await starting.catch(() => {})
    try {
      await app.close()
    } finally {
      redis?.disconnect()
      await db.close()
    }
  })
  await starting.catch(async (err: unknown) => {
    await db.close()
    exitOnStartupError(err, log)
  })
} catch (err) {
  exitOnStartupError(err)
}
