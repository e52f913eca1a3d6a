import { connect, createWorkerPool, migrate, type Db, type Handler, type WorkerPool } from '@backroom/queue-core'
import type { Logger } from 'pino'
import type { WorkerConfig } from './config.ts'
import { createWorkerMetrics, startMetricsServer, type MetricsServer } from './worker-metrics.ts'

/** A started worker: its pool and the one way to stop it. */
export interface RunningWorker {
  readonly pool: WorkerPool
  /** The Prometheus endpoint, when WORKER_METRICS_PORT is set. */
  readonly metrics: MetricsServer | null
  /**
   * Drains the pool (grace period, then release) and closes the database
   * pool. Rejects with the pool's ShutdownIncompleteError (code
   * `shutdown_incomplete`, `jobIds`) when jobs could not be handed back.
   */
  stop(): Promise<void>
}

/**
 * Brings a worker up: applies pending migrations (idempotent, advisory-locked,
 * so several workers starting together are safe), opens the database pool and
 * starts a worker pool over `handlers`. Further migration sets (the shop's
 * domain tables) are applied after the queue's.
 *
 * @example
 * const worker = await startWorker({ config, handlers, log })
 * process.once('SIGTERM', () => void worker.stop())
 */
export async function startWorker(args: {
  readonly config: WorkerConfig
  /** The handlers, or how to build them over the worker's database pool. */
  readonly handlers: ReadonlyArray<Handler> | ((db: Db) => ReadonlyArray<Handler>)
  /** Further migration sets to apply after the queue's (the shop's domain tables). */
  readonly migrations?: ReadonlyArray<(connectionString: string) => Promise<string[]>>
  /** Runs once over the open pool before any claim (the handlers' job type settings). */
  readonly prepare?: (db: Db) => Promise<void>
  readonly log: Logger
}): Promise<RunningWorker> {
  const { config, log } = args
  const applied = await migrate({ connectionString: config.databaseUrl })
  for (const more of args.migrations ?? []) applied.push(...(await more(config.databaseUrl)))
  if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied')
  const db = connect({
    connectionString: config.databaseUrl,
    max: config.dbPoolMax,
    min: config.dbPoolMin,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    acquireTimeoutMs: config.dbPoolAcquireTimeoutMs,
    applicationName: 'backroom-worker',
  })
  let metrics: MetricsServer | null = null
  try {
    await args.prepare?.(db)
    const workerMetrics = config.metricsPort === null ? null : createWorkerMetrics()
    const pool = createWorkerPool({
      db: db.kysely,
      connectionString: config.databaseUrl,
      handlers: typeof args.handlers === 'function' ? args.handlers(db) : args.handlers,
      types: config.types ?? undefined,
      concurrency: config.concurrency,
      prefetch: config.prefetch,
      shutdownGraceMs: config.shutdownGraceMs,
      log,
      onOutcome: workerMetrics?.onOutcome,
    })
    if (workerMetrics && config.metricsPort !== null) {
      metrics = await startMetricsServer(workerMetrics.registry, config.metricsPort)
      log.info({ port: metrics.port }, 'metrics on /metrics')
    }
    await pool.start()
    const served = metrics
    return {
      pool,
      metrics: served,
      async stop() {
        try {
          await pool.stop()
        } finally {
          await served?.close()
          await db.close()
        }
      },
    }
  } catch (err) {
    await metrics?.close()
    await db.close()
    throw err
  }
}
