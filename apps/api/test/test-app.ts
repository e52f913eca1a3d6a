import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../src/app.ts'

/**
 * The app as server.ts builds it (every plugin and route, in load order),
 * ready for `inject`; tests set only what they exercise.
 */
export async function testApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = buildApp(deps)
  await app.ready()
  return app
}
