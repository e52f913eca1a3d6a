import { drainWithinBudget, type Db, type Handler } from '@backroom/queue-core'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { Type } from 'typebox'
import { bearerToken, secretsEqual } from '../../plugins/auth.ts'
import { ErrorBody, errorBody } from '../../schemas/error-body.ts'

/** How the drain endpoint gets handler code; called on its first request only. */
export type LoadHandlers = (db: Db) => Promise<ReadonlyArray<Handler>>

/** Jobs one call runs when the body does not say. */
export const DEFAULT_DRAIN_MAX_JOBS = 50
/** Time one call may take when the body does not say: under the 30 s many platforms give an HTTP cron call. */
export const DEFAULT_DRAIN_BUDGET_MS = 25_000

/** Options of {@link processPendingRoute}. */
export interface ProcessPendingOptions {
  readonly db: Db
  /** CRON_SECRET; null disables the route (404, as for any unknown route). */
  readonly cronSecret: string | null
  /** Default: imports @backroom/handlers and builds every handler over `db` and process.env. */
  readonly loadHandlers?: LoadHandlers
}

const DrainBody = Type.Object(
  {
    maxJobs: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000, default: DEFAULT_DRAIN_MAX_JOBS })),
    budgetMs: Type.Optional(Type.Integer({ minimum: 1_000, maximum: 300_000, default: DEFAULT_DRAIN_BUDGET_MS })),
  },
  { additionalProperties: false },
)

const DrainResult = Type.Object({
  /** Jobs run to an outcome (completed, failed, retried, snoozed or cancelled). */
  processed: Type.Integer(),
  /** Of those, runs that failed (for good, or to be retried). */
  failed: Type.Integer(),
  /** Pending jobs of the handled types left. */
  remaining: Type.Integer(),
  durationMs: Type.Integer(),
})

/**
 * The request's logger when it is a pino logger (server.ts hands Fastify
 * one); the executor needs pino's `isLevelEnabled`, which the no-op logger
 * Fastify uses when logging is off (tests) lacks. Undefined: the drain is silent.
 */
function pinoLogger(log: FastifyBaseLogger): Logger | undefined {
  const candidate = log as unknown as Partial<Logger>
  return typeof candidate.isLevelEnabled === 'function' ? (log as unknown as Logger) : undefined
}

/**
 * The default handler loader. A dynamic import, so the API process never
 * loads handler code (or the marketplace clients it pulls in) unless this
 * route is called.
 */
export const importHandlers: LoadHandlers = async (db) => {
  const { createHandlers, handlerDeps } = await import('@backroom/handlers')
  return createHandlers(handlerDeps(db, process.env))
}

/**
 * `POST /v1/internal/process-pending`: runs pending jobs for at most
 * `budgetMs` (at most `maxJobs` of them), for deployments whose only worker
 * is a platform cron calling this endpoint. Authorised by
 * `Authorization: Bearer <CRON_SECRET>`, compared in constant time (not by
 * an API key: the auth plugin skips /v1/internal). Registered only when
 * CRON_SECRET is set, so without it the route is as unknown as any other.
 *
 * Claims go through the queue's claim (fairness and limits hold) and only
 * what fits the budget; a job the process cannot finish comes back when its
 * lease expires (see drainWithinBudget). Handlers are loaded on the first
 * call and kept.
 */
export const processPendingRoute: FastifyPluginAsync<ProcessPendingOptions> = async (app, options) => {
  // TypeBox's own checker: Fastify's default would drop unknown fields instead of refusing them (400).
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  const secret = options.cronSecret
  if (secret === null) return
  const load = options.loadHandlers ?? importHandlers
  let handlers: Promise<ReadonlyArray<Handler>> | null = null
  const loadOnce = (): Promise<ReadonlyArray<Handler>> => {
    handlers ??= load(options.db).catch((err: unknown) => {
      // A failed load (say, a bad environment) is tried again on the next call, not cached.
      handlers = null
      throw err
    })
    return handlers
  }

  // Checked before the body is read: an unauthorised caller gets 401, never 400 or 413.
  const authorise = async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerToken(request)
    if (token === null || !secretsEqual(token, secret)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send(errorBody('unauthorized', 'the cron secret is required: Authorization: Bearer <CRON_SECRET>'))
    }
  }

  app.withTypeProvider<TypeBoxTypeProvider>().post(
    '/v1/internal/process-pending',
    {
      onRequest: authorise,
      // Cron services often POST with no body at all: that means every default.
      preValidation: async (request) => {
        if (request.body === undefined || request.body === null) (request as { body: unknown }).body = {}
      },
      schema: {
        summary: 'Run pending jobs within a time budget (platform cron)',
        tags: ['internal'],
        security: [{ cronSecret: [] }],
        body: DrainBody,
        response: { 200: DrainResult, 400: ErrorBody, 401: ErrorBody, 500: ErrorBody },
      },
    },
    async (request) => {
      const maxJobs = request.body?.maxJobs ?? DEFAULT_DRAIN_MAX_JOBS
      const budgetMs = request.body?.budgetMs ?? DEFAULT_DRAIN_BUDGET_MS
      const metrics = app.queueMetrics
      const started = performance.now()
      const loaded = await loadOnce()
      const result = await drainWithinBudget(options.db.kysely, {
        handlers: loaded,
        maxJobs,
        // Loading handlers the first time spent part of the budget.
        budgetMs: Math.max(1, Math.floor(budgetMs - (performance.now() - started))),
        log: pinoLogger(request.log),
        onOutcome(job, outcome, durationMs) {
          metrics.jobsClaimed.inc({ type: job.type })
          if (outcome === 'completed') metrics.jobsCompleted.inc({ type: job.type })
          if (outcome === 'failed' || outcome === 'retried') metrics.jobsFailed.inc({ type: job.type })
          metrics.jobDuration.observe({ type: job.type, outcome }, durationMs / 1000)
        },
      })
      request.log.info({ processed: result.processed, failed: result.failed, remaining: result.remaining }, 'pending jobs processed')
      return {
        processed: result.processed,
        failed: result.failed,
        remaining: result.remaining,
        durationMs: Math.round(performance.now() - started),
      }
    },
  )
}
