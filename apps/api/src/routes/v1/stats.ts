import { MAX_HEALTH_STORE_LIMIT, queueHealth } from '@backroom/queue-core'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from 'typebox'
import { ApiError } from '../../api-error.ts'
import { principalOf } from '../../principal.ts'
import { ErrorBody } from '../../schemas/error-body.ts'
import { strictQueryIntegers } from '../../strict-query-integers.ts'

const StatsQuery = Type.Object(
  {
    /** Platform keys: only this store. A store key always sees its own store and may not name one. */
    storeId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    /** Store lines returned, largest backlog first. */
    storeLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HEALTH_STORE_LIMIT })),
    /** Alert thresholds; defaults from queue-core (DEFAULT_BACKLOG_THRESHOLD…). */
    backlog: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    oldestPendingMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    longRunningMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
  },
  { additionalProperties: false },
)

const Figures = {
  pending: Type.Integer(),
  scheduled: Type.Integer(),
  running: Type.Integer(),
  paused: Type.Integer(),
  /** Age of the oldest pending job since its creation; null when nothing is pending. */
  oldestPendingMs: Type.Union([Type.Integer(), Type.Null()]),
  /** Running jobs started longer ago than thresholds.longRunningMs. */
  longRunning: Type.Integer(),
  /** Conditions this line meets (queue-core's HEALTH_ALERTS); empty when healthy. */
  alerts: Type.Array(Type.Union([Type.Literal('backlog'), Type.Literal('oldest_pending'), Type.Literal('long_running')])),
}

const StatsBody = Type.Object({
  thresholds: Type.Object({ backlog: Type.Integer(), oldestPendingMs: Type.Integer(), longRunningMs: Type.Integer() }),
  overall: Type.Object(Figures),
  byType: Type.Array(Type.Object({ type: Type.String(), ...Figures })),
  byStore: Type.Array(Type.Object({ storeId: Type.String(), ...Figures })),
  byStoreType: Type.Array(Type.Object({ storeId: Type.String(), type: Type.String(), ...Figures })),
})


/**
 * `GET /v1/stats`: the queue's health (the job_queue_health figures:
 * backlog, scheduled, running, paused, oldest pending age, long-running
 * jobs) overall, per type, per store and per store and type, each line with
 * the alert conditions it meets. A store key sees its own store only, on
 * every line (overall included); a platform key sees every store, or one
 * with `?storeId=`.
 */
export const statsRoutes: FastifyPluginAsync = async (app) => {
  // TypeBox's own checker: Fastify's default would drop unknown fields instead of refusing them (400).
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.withTypeProvider<TypeBoxTypeProvider>().get(
    '/v1/stats',
    {
      preValidation: strictQueryIntegers(['storeLimit', 'backlog', 'oldestPendingMs', 'longRunningMs']),
      schema: {
        summary: 'Queue health: backlog, oldest pending age and long-running jobs, with alert conditions',
        tags: ['stats'],
        security: [{ bearerAuth: [] }],
        querystring: StatsQuery,
        response: { 200: StatsBody, 400: ErrorBody, 401: ErrorBody },
      },
    },
    async (request) => {
      const own = principalOf(request).storeId
      const { storeId, storeLimit, backlog, oldestPendingMs, longRunningMs } = request.query
      if (own !== null && storeId !== undefined) {
        throw new ApiError(400, 'store_not_allowed', 'a store key sees its own store: omit storeId')
      }
      const health = await request.withDb((db) =>
        queueHealth(db, {
          storeId: own ?? storeId ?? null,
          storeLimit,
          thresholds: { backlog, oldestPendingMs, longRunningMs },
        }),
      )
      // Same shape; queue-core's arrays are readonly, the schema's static type is not.
      return health as Static<typeof StatsBody>
    },
  )
}
