import { queueHealth, type Db, type QueueHealth } from '@backroom/queue-core'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { Type } from 'typebox'

/** Counters and histograms routes update (the jobs routes count enqueues; the drain endpoint its runs). */
export interface QueueMetrics {
  /** Jobs created by enqueue, by type (deduped and coalesced enqueues not counted). */
  readonly jobsEnqueued: Counter<'type'>
  /** Jobs claimed / completed / failed by the drain endpoint in this process, by type. */
  readonly jobsClaimed: Counter<'type'>
  readonly jobsCompleted: Counter<'type'>
  readonly jobsFailed: Counter<'type'>
  /** Run time of jobs run by this process, by type and outcome. */
  readonly jobDuration: Histogram<'type' | 'outcome'>
}

declare module 'fastify' {
  interface FastifyInstance {
    readonly queueMetrics: QueueMetrics
  }
}

/** Options of {@link metricsPlugin}. */
export interface MetricsOptions {
  readonly db: Db
}

/** Label for requests that matched no route: raw URLs as labels would let any caller grow the series without bound. */
const UNMATCHED_ROUTE = 'unmatched'

/**
 * Prometheus metrics at `GET /metrics` (text format), from a registry of
 * this app's own (not prom-client's global one, so a process or a test can
 * build several apps):
 *
 * - process and Node.js defaults (`process_*`, `nodejs_*`);
 * - `http_request_duration_seconds{method,route,status}`, the route being
 *   its pattern (`/v1/jobs/:id`), never the raw URL;
 * - `backroom_queue_jobs{type,state}` and
 *   `backroom_queue_oldest_pending_seconds{type}`, read from the database at
 *   each scrape (queue-core's queueHealth: one scan of the live table), and
 *   `backroom_queue_stats_errors_total` when that read fails (the scrape
 *   still answers, without queue figures);
 * - the QueueMetrics counters (`backroom_jobs_*_total`,
 *   `backroom_job_duration_seconds`);
 * - the API's pg pool: `backroom_db_pool_connections{state=total|idle|waiting}`.
 *
 * `/metrics` is not authenticated, as Prometheus scrapers expect: it carries
 * counts per job type and nothing per store, no payloads and no keys. Keep
 * it off the public internet at the proxy, or scrape over a private network.
 */
export const metricsPlugin = fp<MetricsOptions>(async (app, options) => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration in seconds, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  })

  // One database read per scrape, started by the route before collecting:
  // prom-client collects metrics concurrently, and every queue metric
  // (the error counter included) awaits this same read.
  let current: Promise<QueueHealth | null> = Promise.resolve(null)
  const queueErrors = new Counter({
    name: 'backroom_queue_stats_errors_total',
    help: 'Scrapes whose queue figures could not be read from the database',
    registers: [registry],
    async collect() {
      await current
    },
  })
  const readHealth = (): Promise<QueueHealth | null> =>
    queueHealth(options.db.kysely, { storeLimit: 1 }).catch((err: unknown) => {
      queueErrors.inc()
      app.log.warn({ err }, 'queue figures unavailable for metrics')
      return null
    })
  new Gauge({
    name: 'backroom_queue_jobs',
    help: 'Live jobs per type and state (pending is the queue depth)',
    labelNames: ['type', 'state'] as const,
    registers: [registry],
    async collect() {
      const health = await current
      this.reset()
      for (const line of health?.byType ?? []) {
        for (const state of ['pending', 'scheduled', 'running', 'paused'] as const) this.set({ type: line.type, state }, line[state])
      }
    },
  })
  new Gauge({
    name: 'backroom_queue_oldest_pending_seconds',
    help: 'Age of the oldest pending job per type (since creation, as job_queue_health)',
    labelNames: ['type'] as const,
    registers: [registry],
    async collect() {
      const health = await current
      this.reset()
      for (const line of health?.byType ?? []) {
        if (line.oldestPendingMs !== null) this.set({ type: line.type }, line.oldestPendingMs / 1000)
      }
    },
  })

  new Gauge({
    name: 'backroom_db_pool_connections',
    help: "The API's database pool: total, idle and waiting (clients queued for a connection)",
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, options.db.pool.totalCount)
      this.set({ state: 'idle' }, options.db.pool.idleCount)
      this.set({ state: 'waiting' }, options.db.pool.waitingCount)
    },
  })

  const queueMetrics: QueueMetrics = {
    jobsEnqueued: new Counter({ name: 'backroom_jobs_enqueued_total', help: 'Jobs created by enqueue', labelNames: ['type'], registers: [registry] }),
    jobsClaimed: new Counter({ name: 'backroom_jobs_claimed_total', help: 'Jobs run by this process (drain endpoint)', labelNames: ['type'], registers: [registry] }),
    jobsCompleted: new Counter({ name: 'backroom_jobs_completed_total', help: 'Jobs completed by this process', labelNames: ['type'], registers: [registry] }),
    jobsFailed: new Counter({ name: 'backroom_jobs_failed_total', help: 'Runs that failed in this process (for good or to be retried)', labelNames: ['type'], registers: [registry] }),
    jobDuration: new Histogram({
      name: 'backroom_job_duration_seconds',
      help: 'Run time of jobs run by this process, by type and outcome',
      labelNames: ['type', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300],
      registers: [registry],
    }),
  }
  app.decorate('queueMetrics', queueMetrics)

  app.addHook('onResponse', async (request, reply) => {
    httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? UNMATCHED_ROUTE, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
  })

  app.get(
    '/metrics',
    {
      logLevel: 'warn',
      schema: {
        summary: 'Prometheus metrics (text format)',
        tags: ['ops'],
        security: [],
        response: { 200: Type.String({ description: 'Prometheus text exposition format' }) },
      },
    },
    async (_request, reply) => {
      current = readHealth()
      return reply.type(registry.contentType).send(await registry.metrics())
    },
  )
})
