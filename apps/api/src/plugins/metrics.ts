import { DEFAULT_QUEUE_DEPTH_TIMEOUT_MS, queueDepth, type Db, type TypeDepth } from '@backroom/queue-core'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { Type } from 'typebox'
import { ErrorBody } from '../schemas/error-body.ts'
import { bearerToken, secretsEqual, unauthorized } from './auth.ts'

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
  /** How long the queue figures read from the database are reused, in ms (METRICS_CACHE_MS; 0: each scrape reads, one read at a time). */
  readonly cacheMs: number
  /** The figures statement's time limit in ms (a statement_timeout). */
  readonly queryTimeoutMs?: number
  /** METRICS_KEY: when set, a scrape needs `Authorization: Bearer <key>`. */
  readonly key: string | null
  /** Injected clock (ms) for the cache window. */
  readonly now?: () => number
}

/** The queue figures of one read: null when the read failed. */
type Figures = ReadonlyArray<TypeDepth> | null

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
 *   `backroom_queue_oldest_pending_seconds{type}`, read from the database
 *   (queue-core's queueDepth: one pass over the live table under a statement
 *   timeout) at most once per `cacheMs`, with at most one read in flight:
 *   concurrent scrapes share it, later ones reuse its figures until the
 *   window ends (a failed read too, so a struggling database is not asked
 *   again at every scrape). `backroom_queue_figures_reads_total` counts the
 *   reads, `backroom_queue_stats_errors_total` the failed ones (the scrape
 *   still answers, without queue figures);
 * - the QueueMetrics counters (`backroom_jobs_*_total`,
 *   `backroom_job_duration_seconds`);
 * - the API's pg pool: `backroom_db_pool_connections{state=total|idle|waiting}`.
 *
 * Scrapes cost the database at most one bounded statement per window
 * however many arrive, so an open `/metrics` cannot be used to load it. It
 * carries counts per job type and nothing per store, no payloads and no
 * keys; it is open unless `key` (METRICS_KEY) is set, then a scrape needs
 * `Authorization: Bearer <key>` (401 otherwise, on the matched route, so
 * an escaped spelling of the path is refused too).
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

  const now = options.now ?? Date.now
  const timeoutMs = options.queryTimeoutMs ?? DEFAULT_QUEUE_DEPTH_TIMEOUT_MS
  // The figures every queue metric of a scrape reports: set by render()
  // before collecting (prom-client collects metrics concurrently, and each
  // queue metric, the error counter included, awaits this same promise).
  let current: Promise<Figures> = Promise.resolve(null)
  // The last read (settled or in flight) and when it started: a scrape
  // within `cacheMs` of it, or while it runs, shares it instead of reading.
  let last: { readonly promise: Promise<Figures>; readonly startedMs: number; settled: boolean } | null = null
  const queueErrors = new Counter({
    name: 'backroom_queue_stats_errors_total',
    help: 'Reads of the queue figures that failed (or passed their statement timeout)',
    registers: [registry],
    async collect() {
      await current
    },
  })
  const figureReads = new Counter({
    name: 'backroom_queue_figures_reads_total',
    help: 'Reads of the queue figures from the database (at most one per cache window)',
    registers: [registry],
    async collect() {
      await current
    },
  })
  const read = (): Promise<Figures> =>
    queueDepth(options.db.kysely, { timeoutMs }).catch((err: unknown) => {
      queueErrors.inc()
      app.log.warn({ err }, 'queue figures unavailable for metrics')
      return null
    })
  /** The figures for a scrape now: the last read's while it runs or is fresh, else a new read. */
  const figures = (): Promise<Figures> => {
    const t = now()
    if (last !== null && (!last.settled || t - last.startedMs < options.cacheMs)) return last.promise
    figureReads.inc()
    const entry = { promise: read(), startedMs: t, settled: false }
    void entry.promise.then(() => {
      entry.settled = true
    })
    last = entry
    return entry.promise
  }
  new Gauge({
    name: 'backroom_queue_jobs',
    help: 'Live jobs per type and state (pending is the queue depth)',
    labelNames: ['type', 'state'] as const,
    registers: [registry],
    async collect() {
      const lines = await current
      this.reset()
      for (const line of lines ?? []) {
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
      const lines = await current
      this.reset()
      for (const line of lines ?? []) {
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

  // Scrapes arriving while the text is being rendered share that rendering:
  // rendering costs CPU on the event loop (a few ms), and many concurrent
  // scrapes would otherwise delay every other request of this process.
  let rendering: Promise<string> | null = null
  const render = (): Promise<string> => {
    if (rendering !== null) return rendering
    current = figures()
    const started = registry.metrics().finally(() => {
      rendering = null
    })
    rendering = started
    return started
  }

  const key = options.key
  app.get(
    '/metrics',
    {
      logLevel: 'warn',
      schema: {
        summary: 'Prometheus metrics (text format)',
        description: key === null ? 'Open (METRICS_KEY is not set).' : 'Needs Authorization: Bearer <METRICS_KEY>.',
        tags: ['ops'],
        security: key === null ? [] : [{ metricsKey: [] }],
        response: { 200: Type.String({ description: 'Prometheus text exposition format' }), 401: ErrorBody },
      },
      // A route hook: it runs for the matched route however its path was spelled.
      onRequest: async (request, reply) => {
        if (key === null) return
        const token = bearerToken(request)
        if (token === null || !secretsEqual(token, key)) return unauthorized(reply, 'the metrics key is required: Authorization: Bearer <METRICS_KEY>')
      },
    },
    async (_request, reply) => reply.type(registry.contentType).send(await render()),
  )
})
