import type { Db } from '@backroom/queue-core'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { ErrorBody, errorBody } from '../schemas/error-body.ts'

/** How long /readyz waits for `select 1` before answering 503: probes have short timeouts of their own. */
export const DEFAULT_READY_TIMEOUT_MS = 2_000

const HealthStatus = Type.Object({ status: Type.Literal('ok') })

/** Options of {@link healthRoutes}. */
export interface HealthRoutesOptions {
  /** The pool /readyz checks. */
  readonly db: Pick<Db, 'pool'>
  readonly readyTimeoutMs?: number
}

/**
 * `GET /healthz`: the process is alive (no I/O, so a slow database never
 * gets a healthy process restarted). `GET /readyz`: the database answers
 * `select 1`; 503 with an error body when it does not, so a load balancer
 * stops sending traffic. Both log at warn only: platforms probe every few
 * seconds and info-level request lines would drown everything else.
 */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, options) => {
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS

  app.get('/healthz', { logLevel: 'warn', schema: { response: { 200: HealthStatus } } }, async () => ({ status: 'ok' as const }))

  app.get(
    '/readyz',
    { logLevel: 'warn', schema: { response: { 200: HealthStatus, 503: ErrorBody } } },
    async (request, reply) => {
      try {
        await withTimeout(options.db.pool.query('select 1'), readyTimeoutMs)
        return { status: 'ok' as const }
      } catch (err) {
        request.log.warn({ err }, 'readiness check failed')
        return reply.code(503).send(errorBody('database_unavailable', 'the database is not reachable'))
      }
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
