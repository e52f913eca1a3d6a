import type { Db } from '@backroom/queue-core'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { errorHandler, notFoundHandler } from './plugins/error-handler.ts'
import { healthRoutes } from './routes/health.ts'

/** What the app needs from its process: built by server.ts, or by a test. */
export interface AppDeps {
  /** The API's database pool; the app uses it but never closes it. */
  readonly db: Db
  /** The process's pino root logger; omitted in tests (silent). */
  readonly logger?: FastifyBaseLogger
  /** /readyz's time limit for `select 1`. */
  readonly readyTimeoutMs?: number
}

/**
 * Builds the Fastify app: error handling first, then routes, in load order. Never listens: server.ts does, tests call
 * `inject()` or `listen({ port: 0 })`.
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
  })

  // Set on the root before any route plugin: every encapsulated context inherits them.
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)

  app.register(healthRoutes, { db: deps.db, readyTimeoutMs: deps.readyTimeoutMs })
  return app
}
