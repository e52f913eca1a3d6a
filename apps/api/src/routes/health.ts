import type { Db } from '@backroom/queue-core'
import type { FastifyPluginAsync } from 'fastify'
import type { Redis } from 'ioredis'
import { Type } from 'typebox'
import { ErrorBody, errorBody } from '../schemas/error-body.ts'

/** How long /readyz waits for `select 1` (and Redis PING) before answering 503: probes have short timeouts of their own. */
export const DEFAULT_READY_TIMEOUT_MS = 2_000

const HealthStatus = Type.Object({ status: Type.Literal('ok') })

/** Options of {@link healthRoutes}. */
export interface HealthRoutesOptions {
  /** The pool /readyz checks. */
  readonly db: Pick<Db, 'pool'>
  /** REDIS_URL's client (shared rate limits), checked too when set; null without Redis. */
  readonly redis?: Redis | null
  readonly readyTimeoutMs?: number
}

/**
 * `GET /healthz`: the process is alive (no I/O, so a slow database never
 * gets a healthy process restarted). `GET /readyz`: the database answers
 * `select 1`, and Redis answers PING when configured (enqueue rate limits
 * depend on it); 503 with an error body naming the first that does not, so
 * a load balancer stops sending traffic. Both are checked at once. Both log at warn only: platforms probe every few
 * seconds and info-level request lines would drown everything else.
 */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, options) => {
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS

  const redis = options.redis ?? null

  app.get(
    '/healthz',
    { logLevel: 'warn', schema: { summary: 'Liveness', tags: ['ops'], security: [], response: { 200: HealthStatus } } },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      logLevel: 'warn',
      schema: { summary: 'Readiness: database (and Redis when configured)', tags: ['ops'], security: [], response: { 200: HealthStatus, 503: ErrorBody } },
    },
    async (request, reply) => {
      const [database, cache] = await Promise.allSettled([
        withTimeout(options.db.pool.query('select 1'), readyTimeoutMs),
        redis === null ? Promise.resolve() : withTimeout(redis.ping(), readyTimeoutMs),
      ])
      if (database.status === 'rejected') {
        request.log.warn({ err: database.reason }, 'readiness check failed: database')
        return reply.code(503).send(errorBody('database_unavailable', 'the database is not reachable'))
      }
      if (cache.status === 'rejected') {
        request.log.warn({ err: cache.reason }, 'readiness check failed: redis')
        return reply.code(503).send(errorBody('redis_unavailable', 'redis is not reachable'))
      }
      return { status: 'ok' as const }
    },
  )
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}
